"""Run the real miner exporter with SIMULATED GPUs: ``python -m exporters.demo.simgpu_miner [miner flags]``.

For demos and end-to-end tests on machines without NVIDIA hardware. Everything but NVML is the
real ``opencompute-exporter miner``: same flags, same environment variables, same collectors,
same HTTP server. The one difference is the NVML module: :class:`~exporters.demo.simgpu.SimulatedNvml`
replaces ``pynvml`` (the miner CLI's ``load_pynvml`` is swapped before it runs), so the exported
driver version reads ``simulated``, and its simulated rental stands in for ``/proc`` and Docker
(``load_workload_resolver`` is swapped too). The simulation is tuned with environment variables:

=================================== =========================================== =========
variable                            meaning                                     default
=================================== =========================================== =========
``OPENCOMPUTE_SIMGPU_COUNT``        number of simulated GPUs                    8
``OPENCOMPUTE_SIMGPU_MODEL``        ``h100-sxm`` or ``h100-pcie``               h100-sxm
``OPENCOMPUTE_SIMGPU_SEED``         seed of the load curves and XIDs            27
``OPENCOMPUTE_SIMGPU_FIRST_XID``    seconds after start until the first XID     3s
``OPENCOMPUTE_SIMGPU_XID_INTERVAL`` mean seconds between later XIDs (0 = none)  10m
=================================== =========================================== =========
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from exporters.core.config import ConfigError, parse_duration

log = logging.getLogger(__name__)

ENV_PREFIX = "OPENCOMPUTE_SIMGPU_"


def simulation_from_env(environ: Mapping[str, str] | None = None) -> Any:
    """Build the :class:`SimulatedNvml` described by ``OPENCOMPUTE_SIMGPU_*``; ConfigError if invalid."""
    from exporters.demo.simgpu import MODELS, SimulatedNvml

    env = os.environ if environ is None else environ
    problems: list[str] = []

    def read(name: str, default: str, convert: Any) -> Any:
        raw = env.get(ENV_PREFIX + name, default)
        try:
            return convert(raw)
        except (TypeError, ValueError) as exc:
            problems.append(f"{ENV_PREFIX}{name}={raw!r}: {exc}")
            return convert(default)

    count = read("COUNT", "8", int)
    model = read("MODEL", "h100-sxm", str)
    seed = read("SEED", "27", int)
    first = read("FIRST_XID", "3s", parse_duration)
    interval = read("XID_INTERVAL", "10m", parse_duration)
    if not 0 <= count <= 64:
        problems.append(f"{ENV_PREFIX}COUNT must be 0..64, got {count}")
    if model not in MODELS:
        problems.append(f"{ENV_PREFIX}MODEL must be one of {sorted(MODELS)}, got {model!r}")
    if problems:
        raise ConfigError(problems)
    return SimulatedNvml(count, model=model, seed=seed, first_xid_after=first, xid_interval=interval)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse miner flags exactly like ``opencompute-exporter miner`` and serve with simulated GPUs."""
    from exporters import cli
    from exporters.miner import cli as miner_cli

    try:
        sim = simulation_from_env()
    except ConfigError as exc:
        print("exporters.demo.simgpu_miner: invalid simulation settings:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return cli.EXIT_CONFIG

    def load_simulated() -> Any:
        log.warning("SIMULATED GPUs (%s) from exporters.demo.simgpu: not real hardware", sim.describe())
        return sim

    miner_cli.load_pynvml = load_simulated  # the seams: everything else is the real miner
    miner_cli.load_workload_resolver = lambda values: sim.workloads()
    args = list(sys.argv[1:] if argv is None else argv)
    return cli.main(["miner", *args])


if __name__ == "__main__":
    raise SystemExit(main())
