#!/usr/bin/env bash
# One entry point that installs everything a fresh Debian/Ubuntu machine needs, then runs:
#   bash scripts/dev.sh demo    the main job: a simulated subnet with all exporters (+ Prometheus)
#   bash scripts/dev.sh miner   the miner exporter on this machine, serving on :9927
#   bash scripts/dev.sh test    ruff, generated-file checks and the whole test suite
# Idempotent: a second run skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_system() {
  local missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    echo ">> apt-get install ${missing[*]}"
    as_root apt-get update -qq
    # Debian's postinst tries to start the services; nothing here needs them running.
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_python() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo ">> pip install -e .[test]"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch .venv/.installed
  fi
}

cmd="${1:-test}"
shift || true
install_system
install_python
case "$cmd" in
  test)
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    exec .venv/bin/pytest -q "$@"
    ;;
  demo|miner|validator|network|generate|register-prometheus)
    exec .venv/bin/opencompute-exporter "$cmd" "$@"
    ;;
  *)
    echo "usage: bash scripts/dev.sh {demo|miner|validator|network|generate|test} [args...]" >&2
    exit 2
    ;;
esac
