"""The miner subcommand: flags, collector toggles, and /metrics over real HTTP (in-process, as a process)."""

from __future__ import annotations

import pytest
import requests
from fakes.nvml import FakeNvml
from helpers.exporter_process import running_exporter
from miner_helpers import flag_values, two_gpus
from prometheus_client.parser import text_string_to_metric_families

from exporters.cli import main
from exporters.core.config import ConfigError
from exporters.miner.cli import check


def families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_defaults_listen_on_9927_with_pcie_off():
    v = flag_values()
    assert v["web_listen_address"] == ("0.0.0.0", 9927)
    assert (v["collector_nvml"], v["collector_xid"], v["collector_pcie"]) == (True, True, False)
    assert (v["collector_host"], v["collector_miner"]) == (True, True)
    assert v["host_disk_path"] == "/"
    assert v["miner_port_check_interval"] == 60.0
    assert v["miner_external_ip"] is None


def test_flags_are_mirrored_by_environment_variables():
    v = flag_values(
        environ={
            "OPENCOMPUTE_MINER_EXTERNAL_IP": "203.0.113.7",
            "OPENCOMPUTE_MINER_PORT": "8091",
            "OPENCOMPUTE_MINER_PORT_CHECK_INTERVAL": "5m",
            "OPENCOMPUTE_COLLECTOR_PCIE": "true",
        }
    )
    assert (v["miner_external_ip"], v["miner_port"], v["miner_port_check_interval"]) == (
        "203.0.113.7",
        8091,
        300.0,
    )
    assert v["collector_pcie"] is True


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        flag_values(
            "--miner.external-ip", "not-an-ip", "--miner.port", "70000", "--miner.port-check-interval", "0s"
        )
    assert len(err.value.problems) == 3


def test_ip_without_port_is_a_configuration_error(capsys):
    with pytest.raises(ConfigError):
        check(flag_values("--miner.external-ip", "203.0.113.7"))
    assert main(["miner", "--miner.port", "8091", "--web.listen-address", "127.0.0.1:0"]) == 2
    assert "--miner.external-ip and --miner.port" in capsys.readouterr().err


def test_disabled_collectors_are_not_run(make_exporter):
    fake = FakeNvml(two_gpus())
    parts = make_exporter(
        fake, "--no-collector.nvml", "--no-collector.xid", "--no-collector.host", "--no-collector.workload"
    )
    assert parts.exporter.scrape.names == ["miner"]
    list(parts.exporter.registry.collect())
    assert fake.calls["nvmlInit"] == 0
    assert parts.loops == []


def test_port_check_runs_as_a_background_loop_only_when_configured(make_exporter):
    assert [loop.name for loop in make_exporter(FakeNvml([])).loops] == ["xid-events", "workload-refresh"]
    parts = make_exporter(FakeNvml([]), "--miner.external-ip", "127.0.0.1", "--miner.port", "9")
    assert [loop.name for loop in parts.loops] == ["xid-events", "workload-refresh", "port-check"]


def test_metrics_over_http_end_to_end(make_exporter):
    parts = make_exporter(FakeNvml(two_gpus()))
    server = parts.exporter.server("127.0.0.1", 0)
    server.start()
    try:
        resp = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
        health = requests.get(f"http://127.0.0.1:{server.port}/health", timeout=5)
    finally:
        server.shutdown()
    assert resp.status_code == 200
    fams = families(resp.text)
    assert [s.value for s in fams["opencompute_gpus"]] == [2.0]
    assert {s.labels["uuid"] for s in fams["opencompute_gpu_up"]} == {"GPU-aaaa", "GPU-bbbb"}
    success = {s.labels["collector"]: s.value for s in fams["opencompute_scrape_collector_success"]}
    assert success == {"nvml": 1.0, "xid": 1.0, "host": 1.0, "workload": 1.0, "miner": 1.0}
    assert fams["opencompute_exporter_build_info"][0].labels["exporter"] == "miner"
    assert health.json()["status"] == "ok"


def test_the_real_miner_process_serves_without_a_gpu_and_logs_the_nvml_problem_once():
    """The real CLI and real nvidia-ml-py, as a process: on a GPU-less machine NVML is down,
    /metrics still answers, and the reason is logged once, not per scrape."""
    with running_exporter("miner") as exporter:
        texts = [requests.get(exporter.url("/metrics"), timeout=5).text for _ in range(3)]
        assert exporter.stop() == 0
    log = exporter.log
    fams = families(texts[-1])
    up = fams["opencompute_gpu_nvml_up"][0].value
    if up == 0:
        assert log.count("NVML unavailable") == 1, log
        assert "opencompute_gpu_info" not in fams
    assert "opencompute_miner_spec_memory_bytes" in fams
