#!/usr/bin/env bash
# Idempotent: install Debian's docker.io + debootstrap, start dockerd when no engine answers,
# and build the local base image (no registry is reachable, so nothing can be pulled).
#
#   ci/setup-docker.sh            # engine + base image
#   COMPAT_BASE_IMAGE=name ci/setup-docker.sh
#
# Safe to run again: every step is skipped when its result is already there.
set -euo pipefail

BASE_IMAGE="${COMPAT_BASE_IMAGE:-compat-base:bookworm}"
STATE_DIR="${COMPAT_CI_STATE:-/var/tmp/pytest-compat-ci}"
mkdir -p "$STATE_DIR"

log() { printf '[setup-docker] %s\n' "$*" >&2; }

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "need root to install: ${need_apt[*]}"; exit 1
  fi
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

if ! engine_up; then
  log "starting dockerd"
  # containerd is started by dockerd itself when not running.
  nohup dockerd --host=unix:///var/run/docker.sock >"$STATE_DIR/dockerd.log" 2>&1 &
  deadline=$((SECONDS + 60))
  until engine_up; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "dockerd did not answer within 60 s; last log lines:"
      tail -n 30 "$STATE_DIR/dockerd.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
  log "engine up: $(docker version --format '{{.Server.Version}}')"
fi

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "base image $BASE_IMAGE present"
else
  rootfs="$STATE_DIR/rootfs"
  rm -rf "$rootfs"
  log "debootstrap bookworm (python3) -> $rootfs"
  debootstrap --variant=minbase --include=python3 bookworm "$rootfs" >"$STATE_DIR/debootstrap.log" 2>&1 || {
    log "debootstrap failed; last lines:"; tail -n 30 "$STATE_DIR/debootstrap.log" >&2; exit 1; }
  # Trim what a container never needs.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  log "docker import -> $BASE_IMAGE"
  tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
log "ready: engine up, base image $BASE_IMAGE"
