#!/usr/bin/env bash
# Make sure a Docker engine answers and the sandbox image exists (idempotent).
# On a fresh Debian machine: installs docker.io and debootstrap, starts dockerd without a bridge
# network (the sandbox never has a network), and builds the image offline.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "need root to apt-get install $*; install them and re-run" >&2
        exit 1
    fi
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -newermt '-1 day' 2>/dev/null | head -1)" ]; then
        apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v dockerd >/dev/null || { echo "installing docker.io"; apt_install docker.io; }
command -v debootstrap >/dev/null || { echo "installing debootstrap"; apt_install debootstrap; }

if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd (log: /var/log/grader-dockerd.log)"
    nohup dockerd --bridge=none --iptables=false >/var/log/grader-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -20 /var/log/grader-dockerd.log >&2; echo "dockerd did not start" >&2; exit 1; }
fi

bash sandbox/build-offline.sh grader-sandbox:cpu
