"""Real Prometheus and Alertmanager processes in the shapes deploy/ ships, plus a sample server.

For the HA, remote-write and first-event tests: each server runs on a free loopback port under
one :class:`~exporters.demo.processes.Supervisor` (own process group, killed with the test), with
configs built from the files in deploy/ (targets and URLs swapped for loopback ones).
:class:`SampleServer` is a stand-in exporter (real prometheus_client, real HTTP) whose samples
the test sets, for series that must start at an exact value.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.demo import promstack
from exporters.demo.processes import Child, Supervisor
from helpers.stack import free_ports, require_binaries

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
READY_TIMEOUT = 20.0


class SampleServer:
    """Serves exactly the samples set with :meth:`set` (gauges, or counters for ``*_total``)."""

    def __init__(self) -> None:
        self._samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._lock = threading.Lock()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)  # type: ignore[arg-type]
        (self.port,) = free_ports(1)
        self._server, self._thread = start_http_server(self.port, addr="127.0.0.1", registry=registry)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._samples.setdefault(name, {})[tuple(sorted(labels.items()))] = value

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = {name: dict(series) for name, series in self._samples.items()}
        for name, series in snapshot.items():
            keys = sorted({k for labels in series for k, _ in labels})
            family: Metric
            if name.endswith("_total"):
                family = CounterMetricFamily(name.removesuffix("_total"), "test samples", labels=keys)
            else:
                family = GaugeMetricFamily(name, "test samples", labels=keys)
            for labels, value in series.items():
                values = dict(labels)
                family.add_metric([values.get(k, "") for k in keys], value)
            yield family

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def shipped_prometheus(
    name: str,
    scrape: Mapping[str, str | Iterable[str]],
    *,
    interval: float = 1.0,
    rule_files: Iterable[Path] = (),
    alertmanagers: Iterable[str] = (),
    remote_write_url: str | None = None,
) -> dict[str, Any]:
    """``deploy/prometheus/<name>`` with loopback scrape targets, rules and Alertmanagers.

    Kept from the shipped file: ``global.external_labels``, ``alerting.alert_relabel_configs`` and
    the ``remote_write`` entries (their URL replaced). Scrape jobs, intervals and rule files are
    the test's, so a run takes seconds.
    """
    shipped = yaml.safe_load((DEPLOY / "prometheus" / name).read_text())
    config = promstack.prometheus_config(
        {job: a if isinstance(a, str) else list(a) for job, a in scrape.items()},
        rule_files=rule_files,
        scrape_interval=interval,
        evaluation_interval=interval,
    )
    config["global"]["external_labels"] = shipped["global"]["external_labels"]
    targets = list(alertmanagers)
    if targets:
        config["alerting"] = {
            "alert_relabel_configs": shipped["alerting"]["alert_relabel_configs"],
            "alertmanagers": [{"static_configs": [{"targets": targets}]}],
        }
    if remote_write_url is not None:
        writes = shipped["remote_write"]
        assert writes, f"deploy/prometheus/{name} has no remote_write"
        config["remote_write"] = [
            {
                **w,
                "url": remote_write_url,
                "queue_config": {**w.get("queue_config", {}), "batch_send_deadline": "1s"},
            }
            for w in writes
        ]
    return config


class Servers:
    """Prometheus/Alertmanager children of one test, all stopped by :meth:`stop`."""

    def __init__(self, workdir: Path) -> None:
        self.prometheus, self.alertmanager = require_binaries()
        self.dir = workdir
        self.supervisor = Supervisor(workdir / "logs")
        self.children: dict[str, Child] = {}

    def start_prometheus(
        self, name: str, config: Mapping[str, Any], *, args: Iterable[str] = (), env: Mapping[str, str] = {}
    ) -> str:
        """Start a Prometheus with ``config``; return its base URL once it is ready."""
        (port,) = free_ports(1)
        listen = f"127.0.0.1:{port}"
        path = promstack.write_yaml(self.dir / name / "prometheus.yml", config)
        argv = promstack.prometheus_argv(self.prometheus, path, self.dir / name / "data", listen)
        child = self.supervisor.start(name, [*argv, *args], env={**os.environ, **env})
        self.children[name] = child
        self.supervisor.wait_ready(child, f"http://{listen}/-/ready", timeout=READY_TIMEOUT)
        return f"http://{listen}"

    def start_alertmanager_cluster(
        self, names: list[str], config: Mapping[str, Any], *, peer_timeout: float = 2.0
    ) -> list[str]:
        """Alertmanagers gossiping on loopback (each peers with all others); their base URLs."""
        ports = free_ports(2 * len(names))
        web, gossip = ports[: len(names)], [f"127.0.0.1:{p}" for p in ports[len(names) :]]
        path = promstack.write_yaml(self.dir / "alertmanager.yml", config)
        urls = []
        for index, name in enumerate(names):
            listen = f"127.0.0.1:{web[index]}"
            peers = [g for i, g in enumerate(gossip) if i != index]
            argv = promstack.alertmanager_argv(
                self.alertmanager,
                path,
                self.dir / name / "data",
                listen,
                cluster_listen=gossip[index],
                peers=peers,
                peer_timeout=peer_timeout,
            )
            self.children[name] = self.supervisor.start(name, argv)
            urls.append(f"http://{listen}")
        for name, url in zip(names, urls, strict=True):
            self.supervisor.wait_ready(self.children[name], f"{url}/-/ready", timeout=READY_TIMEOUT)
        return urls

    def kill(self, name: str) -> None:
        """SIGKILL one server (its whole process group), as when its host dies."""
        child = self.children[name]
        os.killpg(child.pid, signal.SIGKILL)
        child.proc.wait(timeout=10)

    def stop(self) -> None:
        self.supervisor.stop_all()
