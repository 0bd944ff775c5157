#!/usr/bin/env bash
# Idempotent project set-up: the Docker engine + base image (as root), then the package with its dev
# extra. Used by ci/test.sh and ci/example.sh, so each README command does its own set-up.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ] || timeout 10 docker info >/dev/null 2>&1; then
  bash ci/setup-docker.sh
  if [ "$(id -u)" -eq 0 ]; then
    bash ci/setup-chromium.sh  # the HTML report's tests drive headless Chromium
  fi
else
  echo "[install] not root and no Docker engine answers: Docker tests will be skipped (process runtime only)" >&2
fi

stamp=".ci-install.stamp"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! (cd / && python3 -c "import compat, testcontainers, schemathesis, pact, jsonschema") 2>/dev/null; then
  echo "[install] pip install -e '.[dev]'" >&2
  python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
