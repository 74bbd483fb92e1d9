"""Validator exporter: proof-of-GPU, scores and allocation state from the validator's ComputeDb.

Flow: ComputeDb (SQLite, opened read-only) -> :mod:`.snapshot` (fixed aggregate queries, one
read per scrape) -> :mod:`.collectors` (metric families) -> HTTP on port 9928, and
:mod:`.payload` (the signed ``stats``/``allocated_hotkeys``/``penalized_hotkeys`` config).
:mod:`.simulate` builds realistic ComputeDb files for the demo, benchmark and tests.
"""
