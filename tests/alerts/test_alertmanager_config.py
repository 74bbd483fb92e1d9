"""deploy/alertmanager/alertmanager.yml: valid for amtool, routes by severity, and inhibits.

Routing is checked with ``amtool config routes test``; inhibition with a real Alertmanager on a
loopback port: alerts are posted to its API and read back with their suppression state.
Missing binaries FAIL the tests (no skip).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import alerts

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
MINER = {"job": "opencompute-miner"}


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required: apt-get install prometheus-alertmanager")
    return path


def _route(*labels: str) -> str:
    proc = subprocess.run(
        [_binary("amtool"), "config", "routes", "test", f"--config.file={CONFIG}", *labels],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_amtool_accepts_the_config() -> None:
    proc = subprocess.run(
        [_binary("amtool"), "check-config", str(CONFIG)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    ("severity", "receiver"), [("critical", "pager"), ("warning", "chat"), ("info", "null")]
)
def test_alerts_are_routed_by_severity(severity: str, receiver: str) -> None:
    assert _route("alertname=OpenComputeGPULost", f"severity={severity}") == receiver


def test_an_alert_without_a_severity_still_reaches_chat() -> None:
    assert _route("alertname=SomethingElse") == "chat"


def test_every_severity_our_rules_use_has_a_route() -> None:
    routed = {_route(f"severity={s}") for s in {a.severity for a in alerts.all_alerts()}}
    assert routed == {"pager", "chat", "null"}


def test_alerts_are_grouped_by_alertname_job_instance_and_hotkey() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["route"]["group_by"] == ["alertname", "job", "instance", "hotkey"]


# --- Inhibition against a real Alertmanager -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = Path(tmp_path_factory.mktemp("alertmanager"))
    base = f"http://127.0.0.1:{_free_port()}"
    log = (workdir / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [
            _binary("prometheus-alertmanager"),
            f"--config.file={CONFIG}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address={base.removeprefix('http://')}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "alertmanager did not start:\n" + (workdir / "alertmanager.log").read_text()[-2000:]
                )
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _post(base: str, alerts_: list[dict[str, Any]]) -> None:
    body = json.dumps(alerts_).encode()
    request = urllib.request.Request(
        f"{base}/api/v2/alerts", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _states(base: str) -> dict[tuple[str, str], str]:
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5) as response:
        found = json.loads(response.read())
    return {
        (a["labels"]["alertname"], a["labels"].get("instance", a["labels"].get("hotkey", ""))): a["status"][
            "state"
        ]
        for a in found
    }


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": severity, **labels}, "annotations": {"summary": name}}


def test_a_down_target_mutes_its_own_alerts_and_nvml_down_mutes_its_gpu_alerts(alertmanager: str) -> None:
    _post(
        alertmanager,
        [
            _alert("OpenComputeExporterDown", "critical", **MINER, instance="miner-1:9927"),
            _alert("OpenComputeGPULost", "critical", **MINER, instance="miner-1:9927", gpu="0", uuid="GPU-a"),
            _alert("OpenComputeMinerPortClosed", "critical", **MINER, instance="miner-1:9927"),
            # Another host's GPU alert is not affected.
            _alert("OpenComputeGPULost", "critical", **MINER, instance="miner-2:9927", gpu="1", uuid="GPU-b"),
            # A network-derived alert about our hotkey has no miner job/instance: never muted here.
            _alert("OpenComputeMinerPenalized", "critical", hotkey="5OurMiner"),
            # NVML down on miner-3 mutes its GPU alerts but not its port alert.
            _alert("OpenComputeNVMLDown", "critical", **MINER, instance="miner-3:9927"),
            _alert(
                "OpenComputeGPUTemperatureHigh",
                "warning",
                **MINER,
                instance="miner-3:9927",
                gpu="0",
                uuid="GPU-c",
            ),
            _alert("OpenComputeMinerPortClosed", "critical", **MINER, instance="miner-3:9927"),
        ],
    )
    expected = {
        ("OpenComputeExporterDown", "miner-1:9927"): "active",
        ("OpenComputeGPULost", "miner-1:9927"): "suppressed",
        ("OpenComputeMinerPortClosed", "miner-1:9927"): "suppressed",
        ("OpenComputeGPULost", "miner-2:9927"): "active",
        ("OpenComputeMinerPenalized", "5OurMiner"): "active",
        ("OpenComputeNVMLDown", "miner-3:9927"): "active",
        ("OpenComputeGPUTemperatureHigh", "miner-3:9927"): "suppressed",
        ("OpenComputeMinerPortClosed", "miner-3:9927"): "active",
    }
    deadline = time.monotonic() + 10
    while (states := _states(alertmanager)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert states == expected
