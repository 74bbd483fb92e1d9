"""The network exporter: a verified, cached view of every miner and validator run (port 9929).

``refresh`` reads runs from the state store in the background, ``trust`` decides which runs and
validators to believe, ``views`` aggregates (pure functions, parity with the original's
``get_stats_allocated``), ``collectors`` turns the snapshot into metrics, ``simulate`` seeds a
signed simulated subnet for the demo and benchmarks.
"""
