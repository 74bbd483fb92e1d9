"""The container side: compose.yaml against the compose-spec schema, the Dockerfile linted offline.

No Docker engine runs here, so the Dockerfile is checked for what a build would trip on: its
stages, the non-root numeric USER, the entrypoint being our console script, the exposed ports,
and that every COPY source survives .dockerignore; then the files the builder stage would hold
are assembled and checked to be an installable package (what its ``pip install .`` needs).
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import setuptools
import yaml
from deploy_tools import DEPLOY, REPO

from exporters.cli import SUBCOMMANDS

COMPOSE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PORTS = {"miner": 9927, "validator": 9928, "network": 9929}


# --- compose -----------------------------------------------------------------------------------


def check_compose(run_tool, path: Path) -> subprocess.CompletedProcess[str]:
    return run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(path))


def test_compose_file_is_valid_against_the_compose_spec_schema(run_tool):
    result = check_compose(run_tool, COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def test_the_schema_check_as_run_here_rejects_a_misspelt_service_key(tmp_path, run_tool):
    compose = yaml.safe_load(COMPOSE.read_text())
    compose["services"]["prometheus"]["volume"] = []
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(compose))
    assert check_compose(run_tool, broken).returncode != 0


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def bind_mounts(service: dict) -> dict[str, str]:
    """{host source: container target} of the service's bind mounts (sources starting with . or $)."""
    mounts = {}
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if parts[0].startswith((".", "$", "/")):
            source = volume.split(":/", 1)[0]
            target = "/" + volume.split(":/", 1)[1].split(":")[0]
            mounts[source] = target
    return mounts


def test_every_relative_mount_in_compose_exists_in_the_repository():
    for name, service in compose()["services"].items():
        for source in bind_mounts(service):
            if source.startswith("."):
                assert (COMPOSE.parent / source).resolve().exists(), (name, source)


def test_the_stack_has_three_exporters_prometheus_alertmanager_and_grafana():
    services = compose()["services"]
    assert {f"{e}-exporter" for e in PORTS} | {"prometheus", "alertmanager", "grafana"} == set(services)
    for exporter, port in PORTS.items():
        service = services[f"{exporter}-exporter"]
        assert service["command"] == [exporter]
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert service["build"]["context"] == "../.." and service["build"]["dockerfile"] == "Dockerfile"
        assert str(port) in " ".join(service["healthcheck"]["test"])


def test_prometheus_and_alertmanager_mount_the_generated_rules_and_our_alertmanager_config():
    services = compose()["services"]
    prom = bind_mounts(services["prometheus"])
    rules_dir = prom["../../alerts/generated"]
    rule_files = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())["rule_files"]
    assert rule_files == [f"{rules_dir}/*.yml"]
    assert prom["./prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    am = bind_mounts(services["alertmanager"])
    assert am["../alertmanager/alertmanager.yml"] == "/etc/alertmanager/alertmanager.yml"


def test_the_miner_gets_gpus_through_the_nvidia_toolkit_with_utility_capability_only():
    miner = compose()["services"]["miner-exporter"]
    (device,) = miner["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert miner["environment"]["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    assert miner["profiles"] == ["miner"]


def test_the_validator_sees_the_computedb_read_only():
    validator = compose()["services"]["validator-exporter"]
    db_mounts = [v for v in validator["volumes"] if "computedb" in v]
    assert db_mounts and all(v.endswith(":ro") for v in db_mounts)
    db_path = validator["environment"]["OPENCOMPUTE_VALIDATOR_DB_PATH"]
    assert any(db_path.startswith(v.split(":")[-2] + "/") for v in db_mounts)


@pytest.mark.parametrize("exporter", sorted(PORTS))
def test_every_opencompute_variable_compose_sets_is_a_flag_of_the_service_command(exporter):
    service = compose()["services"][f"{exporter}-exporter"]
    module = importlib.import_module(SUBCOMMANDS[exporter][0])
    envs = {f.env for f in module.flags().flags}
    ours = {e for e in service.get("environment", {}) if e.startswith("OPENCOMPUTE_")}
    assert not ours - envs, sorted(ours - envs)


# --- Dockerfile --------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined, out = "", []
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not joined and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            joined += line[:-1] + " "
            continue
        joined += line
        word, _, rest = joined.partition(" ")
        out.append((word.upper(), rest.strip()))
        joined = ""
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    args = {}
    for word, rest in instructions():
        if word == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            image, _, name = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
            current = result.setdefault(name.strip(), [("FROM", image.strip())])
        else:
            assert current is not None, f"{word} before FROM"
            current.append((word, rest))
    return result


def test_dockerfile_is_a_builder_then_a_python_311_slim_runtime():
    s = stages()
    assert list(s) == ["builder", "runtime"]
    assert s["runtime"][0] == ("FROM", "python:3.11-slim")
    assert any(w == "COPY" and r.startswith("--from=builder ") for w, r in s["runtime"])
    assert any(w == "RUN" and "pip install ." in r for w, r in s["builder"])


def test_runtime_runs_as_a_numeric_non_root_user_matching_the_kubernetes_manifests():
    runtime = stages()["runtime"]
    users = [r for w, r in runtime if w == "USER"]
    assert users, "the runtime stage must drop root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    manifests = (DEPLOY / "kubernetes").glob("*.yaml")
    run_as = set()
    for path in manifests:
        run_as |= set(re.findall(r"runAsUser: (\d+)", path.read_text())) - {"0"}
    assert run_as == {uid}


def test_entrypoint_is_the_console_script_and_every_exporter_port_is_exposed():
    runtime = stages()["runtime"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = [r for w, r in runtime if w == "ENTRYPOINT"]
    assert yaml.safe_load(entrypoint) == ["opencompute-exporter"]
    assert "opencompute-exporter" in scripts
    exposed = {int(p) for w, r in runtime if w == "EXPOSE" for p in r.split()}
    assert exposed == set(PORTS.values())
    env = " ".join(r for w, r in runtime if w == "ENV")
    assert "NVIDIA_DRIVER_CAPABILITIES=utility" in env


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exclusion, regex) per .dockerignore line, in order (Docker: the last match wins)."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        text = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(text):
            if text.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif text.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif text[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif text[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(text[i]), i + 1
        patterns.append((not negate, re.compile(regex)))
    return patterns


def in_context(relpath: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker sends ``relpath``: a pattern matching the path or one of its parents applies."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for exclude, regex in patterns:
        if any(regex.fullmatch(c) for c in candidates):
            excluded = exclude
    return not excluded


def test_dockerignore_matcher_follows_docker_semantics():
    patterns = dockerignore_patterns()
    assert in_context("exporters/cli.py", patterns)
    assert not in_context("exporters/__pycache__/cli.cpython-311.pyc", patterns)
    assert not in_context(".venv/bin/python", patterns)
    assert not in_context("tests/conftest.py", patterns)


def test_every_copy_source_exists_and_survives_dockerignore():
    patterns = dockerignore_patterns()
    for word, rest in instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _dest = shlex.split(rest)
        for source in sources:
            assert (REPO / source).exists(), source
            assert in_context(source, patterns), f"COPY {source} is excluded by .dockerignore"


def build_context(tmp_path: Path) -> Path:
    """The files ``docker build`` would send, copied to a temporary directory."""
    patterns = dockerignore_patterns()
    reincluded = [
        line.lstrip("!").strip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip().startswith("!")
    ]
    context = tmp_path / "context"
    for root, dirs, files in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO).as_posix()
        prefix = "" if rel_root == "." else rel_root + "/"
        # Do not descend into an excluded directory that no "!" pattern reaches into (.venv, .git).
        dirs[:] = [
            d
            for d in dirs
            if in_context(prefix + d, patterns) or any(r.startswith(prefix + d + "/") for r in reincluded)
        ]
        for name in files:
            rel = prefix + name
            if in_context(rel, patterns):
                target = context / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(root) / name, target)
    return context


def test_the_builder_stage_sees_a_buildable_package_with_the_console_script(tmp_path):
    context = build_context(tmp_path)
    assert not (context / ".venv").exists() and not (context / "tests").exists()
    # What `COPY pyproject.toml README.md ./ ; COPY exporters ...` leaves in /src.
    src = tmp_path / "src"
    src.mkdir()
    for word, rest in stages()["builder"]:
        if word == "COPY":
            *sources, dest = shlex.split(rest)
            for source in sources:
                origin = context / source
                target = src / dest / Path(source).name if dest.endswith("/") else src / dest
                if origin.is_dir():
                    shutil.copytree(origin, target)
                else:
                    shutil.copy2(origin, target)
    # pip would build from here: everything pyproject.toml names must be present, and setuptools'
    # package discovery (pyproject's own include patterns) must find the console script's module.
    project = tomllib.loads((src / "pyproject.toml").read_text())
    assert (src / project["project"]["readme"]).is_file()
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = set(setuptools.find_packages(str(src), include=include))
    assert {"exporters", "exporters.core", "alerts", "dashboards"} <= packages
    module, _, _func = project["project"]["scripts"]["opencompute-exporter"].partition(":")
    assert (src / (module.replace(".", "/") + ".py")).is_file()
    assert not any(p.startswith("tests") for p in packages)
