"""Run the miner exporter against REAL NVML and show what it exports (for a machine with a GPU).

Starts ``opencompute-exporter miner`` (real CLI, real nvidia-ml-py) on a free loopback port,
scrapes /metrics a few times, and prints the scrape latency (median, p95), the NVML and driver
versions, and every metric family found with its sample count. Exits 1 when NVML is not up (no
driver, no GPU, no permission), 2 when the exporter does not start. Run:
``.venv/bin/python benchmarks/gpu_check.py [--scrapes 10] [--pcie]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]


def start(extra: list[str]) -> tuple[subprocess.Popen, int, list[str]]:
    cmd = [sys.executable, "-m", "exporters", "miner", "--web.listen-address", "127.0.0.1:0", *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", line)
        if m:
            return proc, int(m.group(1)), lines
    proc.kill()
    raise RuntimeError("exporter did not start:\n" + "".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scrapes", type=int, default=10)
    ap.add_argument(
        "--interval", type=float, default=1.1, help="seconds between scrapes (> snapshot sharing)"
    )
    ap.add_argument("--pcie", action="store_true", help="also enable --collector.pcie")
    args = ap.parse_args()
    try:
        proc, port, log_lines = start(["--collector.pcie"] if args.pcie else [])
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    url = f"http://127.0.0.1:{port}/metrics"
    latencies, text = [], ""
    try:
        session = requests.Session()
        for i in range(args.scrapes):
            t = time.perf_counter()
            resp = session.get(url, timeout=30)
            latencies.append(time.perf_counter() - t)
            resp.raise_for_status()
            text = resp.text
            if i + 1 < args.scrapes:
                time.sleep(args.interval)
    finally:
        proc.terminate()
        _, rest = proc.communicate(timeout=10)
    fams = list(text_string_to_metric_families(text))
    by_name = {f.name: f for f in fams}
    up = by_name.get("opencompute_gpu_nvml_up")
    nvml_up = bool(up and up.samples and up.samples[0].value == 1)
    lat = sorted(latencies)
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    print(
        f"scrapes: {len(lat)}  latency median {statistics.median(lat) * 1e3:.1f} ms  p95 {p95 * 1e3:.1f} ms"
    )
    durations = by_name.get("opencompute_scrape_collector_duration_seconds")
    for s in durations.samples if durations else []:
        print(f"  collector {s.labels['collector']:<6} {s.value * 1e3:8.2f} ms (last scrape)")
    info = by_name.get("opencompute_gpu_nvml_info")
    if info and info.samples:
        print("NVML:", ", ".join(f"{k}={v}" for k, v in sorted(info.samples[0].labels.items())))
    print(f"{len(fams)} metric families:")
    for f in sorted(fams, key=lambda f: f.name):
        name = f.name + "_total" if f.type == "counter" else f.name
        print(f"  {name:<58} {f.type:<8} {len(f.samples):>4} samples")
    if not nvml_up:
        print("\nNVML IS NOT AVAILABLE on this machine: opencompute_gpu_nvml_up is 0.", file=sys.stderr)
        for line in log_lines + rest.splitlines(keepends=True):
            if "NVML" in line:
                print("  exporter log:", line.rstrip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
