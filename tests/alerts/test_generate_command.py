"""``opencompute-exporter generate``: deterministic, idempotent, offline, and ``--check`` for CI."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from exporters import cli, generate

REPO = Path(__file__).resolve().parents[2]


def _run(
    tmp_path: Path, *, check: bool = False, grafana_url: str = "http://localhost:3000"
) -> tuple[int, str]:
    out = io.StringIO()
    code = generate.run({"output_dir": tmp_path, "check": check, "grafana_url": grafana_url}, stdout=out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return generate.render_all("http://localhost:3000")


def test_generate_writes_dashboards_rules_and_kubernetes_objects(
    tmp_path: Path, rendered: dict[str, str]
) -> None:
    code, output = _run(tmp_path)
    assert code == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(rendered)
    assert {p.split("/")[0] for p in written} == {"alerts", "dashboards", "deploy"}
    assert f"{len(rendered)} written, 0 removed, 0 unchanged" in output


def test_generating_again_changes_nothing(tmp_path: Path) -> None:
    _run(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.*")}
    code, output = _run(tmp_path)
    assert code == 0
    assert "0 written, 0 removed" in output
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.*")} == before


def test_check_passes_on_fresh_output_and_writes_nothing(tmp_path: Path) -> None:
    _run(tmp_path)
    code, output = _run(tmp_path, check=True)
    assert code == 0
    assert "up to date" in output


def test_check_fails_with_a_diff_when_a_committed_file_was_edited(tmp_path: Path) -> None:
    _run(tmp_path)
    rules = tmp_path / "alerts" / "generated" / "gpu.yml"
    rules.write_text(rules.read_text().replace("> 85", "> 95"))
    code, output = _run(tmp_path, check=True)
    assert code == generate.EXIT_STALE == 1
    assert "--- a/alerts/generated/gpu.yml" in output
    assert "\n-        opencompute_gpu_temperature_celsius > 95\n" in output
    assert "\n+        opencompute_gpu_temperature_celsius > 85\n" in output
    assert "> 95" in rules.read_text(), "--check must not write"


def test_the_runbook_url_option_reaches_every_rule_and_the_prometheusrule(tmp_path: Path) -> None:
    out = io.StringIO()
    values = {"output_dir": tmp_path, "check": False, "grafana_url": "http://localhost:3000"}
    assert generate.run({**values, "runbook_url": "https://wiki.example.net/oc/runbook#"}, stdout=out) == 0
    rules = (tmp_path / "alerts" / "generated" / "miner.yml").read_text()
    assert "runbook_url: https://wiki.example.net/oc/runbook#opencomputeminerpenalized" in rules
    k8s = (tmp_path / "deploy" / "kubernetes" / "generated" / "prometheusrule.yaml").read_text()
    assert "https://wiki.example.net/oc/runbook#opencomputeminerpenalized" in k8s
    assert "github.com" not in rules


def test_check_fails_on_a_missing_file_and_on_a_leftover_one(tmp_path: Path) -> None:
    _run(tmp_path)
    (tmp_path / "dashboards" / "generated" / "opencompute-network.json").unlink()
    leftover = tmp_path / "dashboards" / "generated" / "old-dashboard.json"
    leftover.write_text("{}\n")
    code, output = _run(tmp_path, check=True)
    assert code == 1
    assert "dashboards/generated/opencompute-network.json" in output
    assert "dashboards/generated/old-dashboard.json" in output
    code, output = _run(tmp_path)
    assert code == 0
    assert "removed dashboards/generated/old-dashboard.json" in output
    assert not leftover.exists()
    assert _run(tmp_path, check=True)[0] == 0


def test_the_grafana_url_flag_changes_only_the_dashboard_links(tmp_path: Path) -> None:
    _run(tmp_path)
    code, output = _run(tmp_path, check=True, grafana_url="https://grafana.example.net")
    assert code == 1
    assert "+      dashboard_url: https://grafana.example.net/d/" in output


def test_generation_needs_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("generate tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert _run(tmp_path)[0] == 0


def test_the_committed_checkout_is_up_to_date() -> None:
    """What CI runs: `opencompute-exporter generate --check` on the repository itself."""
    out = io.StringIO()
    code = generate.run(
        {"output_dir": None, "check": True, "grafana_url": "http://localhost:3000"}, stdout=out
    )
    assert code == 0, out.getvalue()[-3000:]


def test_the_cli_subcommand_takes_prometheus_style_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["generate", "--output-dir", str(tmp_path)]) == 0
    assert cli.main(["generate", "--check", "--output-dir", str(tmp_path)]) == 0
    (tmp_path / "alerts" / "generated" / "miner.yml").write_text("groups: []\n")
    assert cli.main(["generate", "--check", "--output-dir", str(tmp_path)]) == 1
    assert "alerts/generated/miner.yml" in capsys.readouterr().out
