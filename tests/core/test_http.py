"""The shared HTTP layer: routes, negotiation, health, basic auth and TLS, with a real client."""

from __future__ import annotations

import gzip
import ssl
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
from prometheus_client.core import GaugeMetricFamily

from exporters.core.collector import SubCollector
from exporters.core.runtime import Exporter
from exporters.core.webconfig import WebConfig, load_web_config


class Ok(SubCollector):
    name = "ok"

    def collect(self):
        g = GaugeMetricFamily("opencompute_test_value", "A test value.", labels=["k"])
        g.add_metric(["a"], 1.5)
        yield g


class Boom(SubCollector):
    name = "boom"

    def collect(self):
        yield GaugeMetricFamily("opencompute_test_partial", "Never exported: the collector fails.", value=1)
        raise RuntimeError("upstream exploded")


@pytest.fixture
def serve() -> Iterator:
    servers = []

    def start(collectors, web_config=None, path="/metrics"):
        srv = Exporter("test", collectors).server("127.0.0.1", 0, path, web_config)
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.shutdown()


def test_landing_page_links_to_the_telemetry_path(serve):
    srv = serve([Ok()], path="/custom")
    r = requests.get(f"http://127.0.0.1:{srv.port}/", timeout=5)
    assert r.status_code == 200
    assert 'href="/custom"' in r.text
    assert requests.get(f"http://127.0.0.1:{srv.port}/custom", timeout=5).status_code == 200
    assert requests.get(f"http://127.0.0.1:{srv.port}/metrics", timeout=5).status_code == 404


def test_metrics_include_build_info_and_collector_health(serve):
    srv = serve([Ok()])
    text = requests.get(f"http://127.0.0.1:{srv.port}/metrics", timeout=5).text
    assert 'opencompute_exporter_build_info{exporter="test"' in text
    assert 'opencompute_scrape_collector_success{collector="ok"} 1.0' in text
    assert 'opencompute_scrape_collector_duration_seconds{collector="ok"}' in text
    assert 'opencompute_test_value{k="a"} 1.5' in text


def test_a_failing_collector_drops_only_its_own_families(serve):
    srv = serve([Boom(), Ok()])
    text = requests.get(f"http://127.0.0.1:{srv.port}/metrics", timeout=5).text
    assert 'opencompute_scrape_collector_success{collector="boom"} 0.0' in text
    assert "opencompute_test_partial" not in text
    assert 'opencompute_test_value{k="a"} 1.5' in text


def test_health_reflects_the_last_collection(serve):
    good = serve([Ok()])
    bad = serve([Boom()])
    for srv in (good, bad):
        requests.get(f"http://127.0.0.1:{srv.port}/metrics", timeout=5)
    assert requests.get(f"http://127.0.0.1:{good.port}/health", timeout=5).status_code == 200
    r = requests.get(f"http://127.0.0.1:{bad.port}/health", timeout=5)
    assert r.status_code == 503
    assert r.json()["failed_collectors"] == ["boom"]


def test_openmetrics_and_gzip_are_negotiated(serve):
    srv = serve([Ok()])
    url = f"http://127.0.0.1:{srv.port}/metrics"
    r = requests.get(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=5)
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")
    raw = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True).raw
    assert raw.headers["Content-Encoding"] == "gzip"
    assert b"opencompute_test_value" in gzip.decompress(raw.read())


def _web_config(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "web.yml"
    p.write_text(body)
    return p


def test_basic_auth_accepts_the_right_password_and_rejects_a_wrong_one(serve, tmp_path):
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    cfg = load_web_config(_web_config(tmp_path, f"basic_auth_users:\n  prom: '{hashed}'\n"))
    srv = serve([Ok()], web_config=cfg)
    url = f"http://127.0.0.1:{srv.port}/metrics"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, auth=("prom", "wrong"), timeout=5).status_code == 401
    assert requests.get(url, auth=("nobody", "s3cret"), timeout=5).status_code == 401
    ok = requests.get(url, auth=("prom", "s3cret"), timeout=5)
    assert ok.status_code == 200 and "opencompute_test_value" in ok.text
    # The cached success path must still reject a different password for the same user.
    assert requests.get(url, auth=("prom", "s3cret!"), timeout=5).status_code == 401


def _tls_web_config(tmp_path: Path, tls_material: dict[str, Path], extra: str = "") -> WebConfig:
    """A loaded web config serving the test server certificate, plus ``extra`` YAML lines."""
    server = f"  cert_file: {tls_material['server.crt']}\n  key_file: {tls_material['server.key']}\n"
    return load_web_config(_web_config(tmp_path, f"tls_server_config:\n{server}{extra}"))


def test_tls_serves_https_and_plain_http_is_refused(serve, tmp_path, tls_material):
    cfg = _tls_web_config(tmp_path, tls_material)
    srv = serve([Ok()], web_config=cfg)
    r = requests.get(f"https://127.0.0.1:{srv.port}/metrics", verify=str(tls_material["ca.crt"]), timeout=5)
    assert r.status_code == 200 and "opencompute_test_value" in r.text
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{srv.port}/metrics", timeout=5)


def test_mutual_tls_requires_a_client_certificate_signed_by_the_ca(serve, tmp_path, tls_material):
    cfg = _tls_web_config(
        tmp_path,
        tls_material,
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {tls_material['ca.crt']}\n",
    )
    srv = serve([Ok()], web_config=cfg)
    url = f"https://127.0.0.1:{srv.port}/metrics"
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(url, verify=str(tls_material["ca.crt"]), timeout=5)
    cert = (str(tls_material["client.crt"]), str(tls_material["client.key"]))
    r = requests.get(url, verify=str(tls_material["ca.crt"]), cert=cert, timeout=5)
    assert r.status_code == 200


def test_tls_and_basic_auth_work_together(serve, tmp_path, tls_material):
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    cfg = _tls_web_config(tmp_path, tls_material, f"basic_auth_users:\n  u: '{hashed}'\n")
    srv = serve([Ok()], web_config=cfg)
    url = f"https://127.0.0.1:{srv.port}/metrics"
    ca = str(tls_material["ca.crt"])
    assert requests.get(url, verify=ca, timeout=5).status_code == 401
    assert requests.get(url, verify=ca, auth=("u", "pw"), timeout=5).status_code == 200
    assert ssl.OPENSSL_VERSION  # the stdlib ssl module served this, not a proxy


def test_landing_page_shows_version_collectors_state_backend_and_docs():
    from exporters import __version__
    from exporters.core.runtime import landing_settings

    collectors = [Ok()]
    values = {"state_backend": "wandb", "wandb_entity": "neuralinternet", "wandb_project": "opencompute"}
    srv = Exporter("test", collectors).server(
        "127.0.0.1", 0, "/metrics", None, settings={**landing_settings(values), "note": "<b>"}
    )
    srv.start()
    try:
        text = requests.get(f"http://127.0.0.1:{srv.port}/", timeout=5).text
    finally:
        srv.shutdown()
    assert f"<th>version</th><td>{__version__}</td>" in text
    assert "<th>collectors</th><td>ok</td>" in text
    assert "<th>state backend</th><td>wandb (neuralinternet/opencompute)</td>" in text
    assert "&lt;b&gt;" in text and "<b>" not in text  # settings are escaped
    assert 'href="https://github.com/' in text and "/docs/metrics/test.md" in text
