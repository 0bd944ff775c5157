#!/usr/bin/env bash
# The main job, with its own set-up: gate the bundled example system (fixtures/) with `compat run`.
#   ci/example.sh                                   # compatible candidates: exits 0
#   ci/example.sh --candidate orders=v2-rename-field  # a breaking candidate: exits non-zero
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install.sh
export COMPAT_BASE_IMAGE="${COMPAT_BASE_IMAGE:-compat-base:bookworm}"
exec compat run "$@"
