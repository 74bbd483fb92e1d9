"""Stable dashboard uids, importable without grafanalib.

Alerts link to dashboards by uid (``/d/<uid>``) and the Kubernetes ConfigMaps are named after
them, so a uid must never change once released. Kept apart from the dashboard modules so
``alerts`` can import them without paying for grafanalib.
"""

from __future__ import annotations

MINER_GPUS = "opencompute-miner-gpus"
VALIDATOR_POG = "opencompute-validator-pog"
NETWORK = "opencompute-network"
EXPORTER_HEALTH = "opencompute-exporter-health"
SUBNET_CHAIN = "opencompute-subnet-chain"

ALL: tuple[str, ...] = (MINER_GPUS, VALIDATOR_POG, NETWORK, EXPORTER_HEALTH, SUBNET_CHAIN)
