"""The SN27 subnet's rules, as the original v1.9.0 validators and miners apply them.

One place for what two exporters share: which validators are trusted (``trust``: stake on the
metagraph, the cached metagraph and allowlist sources), how their runs are read (``reading``: the
original's v1 signature check, order and stop points), and what the network concludes from them
(``views``: allocated miners, enforced penalties, the dominant proof-of-GPU entry per uid). The
miner exporter (its ``allocated``) and the network exporter import these; nothing here imports
an exporter.
"""
