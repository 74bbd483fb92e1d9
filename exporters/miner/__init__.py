"""Miner exporter: NVML GPU metrics, XID events, host specs, port check and allocation (port 9927)."""
