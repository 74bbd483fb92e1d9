"""Stable dashboard uids: the one registry that dashboards (which carry them) and alerts (which
link to them by ``/d/<uid>``) share, so neither package imports the other.

The Kubernetes ConfigMaps are named after them too, so a uid must never change once released.
Plain strings, importable without grafanalib.
"""

from __future__ import annotations

MINER_GPUS = "opencompute-miner-gpus"
VALIDATOR_POG = "opencompute-validator-pog"
NETWORK = "opencompute-network"
EXPORTER_HEALTH = "opencompute-exporter-health"
SUBNET_CHAIN = "opencompute-subnet-chain"

ALL: tuple[str, ...] = (MINER_GPUS, VALIDATOR_POG, NETWORK, EXPORTER_HEALTH, SUBNET_CHAIN)
