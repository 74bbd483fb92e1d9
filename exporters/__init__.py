"""opencompute-exporters: Prometheus exporters for the NI Compute Subnet (Bittensor subnet 27)."""

__version__ = "0.1.0"

# Where the metrics reference lives (docs/metrics/<exporter>.md), linked from each landing page.
DOCS_URL = "https://github.com/opencompute-exporters/opencompute-exporters/blob/main/docs/metrics"
