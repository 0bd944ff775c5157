#!/usr/bin/env bash
# The test suite, with its own set-up: `ci/test.sh [pytest args]`.
# Lints (ruff), type-checks (mypy --strict compat) and runs pytest. Docker tests run against the real
# engine; with COMPAT_REQUIRE_DOCKER=1 (CI) a missing engine fails them instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install.sh
export COMPAT_BASE_IMAGE="${COMPAT_BASE_IMAGE:-compat-base:bookworm}"
echo "== ruff" && python3 -m ruff check .
echo "== mypy --strict compat" && python3 -m mypy --strict compat
echo "== pytest" && python3 -m pytest "$@"
