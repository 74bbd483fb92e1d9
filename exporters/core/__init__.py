"""Shared, exporter-agnostic building blocks: config, HTTP serving, collector health, state."""
