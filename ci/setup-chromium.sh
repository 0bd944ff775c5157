#!/usr/bin/env bash
# Idempotent: install Debian's chromium when no `chromium` is on PATH (used to test the HTML report).
#
#   ci/setup-chromium.sh
#
# Safe to run again: nothing is installed when `chromium` already answers. Needs root to install.
set -euo pipefail

log() { printf '[setup-chromium] %s\n' "$*" >&2; }

if command -v chromium >/dev/null 2>&1; then
  log "chromium already installed: $(command -v chromium) ($(chromium --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  log "chromium is missing and installing it needs root: run as root, or 'sudo apt-get install chromium'"
  exit 1
fi

log "chromium not found; apt-get install chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null

if ! command -v chromium >/dev/null 2>&1; then
  log "apt-get finished but 'chromium' is still not on PATH"
  exit 1
fi
log "installed: $(command -v chromium) ($(chromium --version 2>/dev/null || echo 'version unknown'))"
