"""opencompute-exporters: Prometheus exporters for the NI Compute Subnet (Bittensor subnet 27)."""

__version__ = "0.1.0"
