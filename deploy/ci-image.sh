#!/usr/bin/env bash
# CI: build the image and run its end-to-end smoke test (deploy/build.sh) wherever podman can be had.
#
#   bash deploy/ci-image.sh
#
# On a host without podman it installs podman, runc and mmdebstrap with apt-get (as root). The base
# image is PYTHON_IMAGE if set, else python:3.12-slim if it is present or can be pulled, else a
# Debian bookworm base made here with mmdebstrap (kept as local/python:3.11-bookworm for later runs).
# The build gets the host's network and pip configuration (with its CA bundle), so `pip wheel` reaches
# the package index the host reaches. Where a step cannot be done (no root, no apt, no disk, no
# base image) it says what it skipped and why and exits 0; a build or smoke test that fails exits 1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOCAL_BASE=localhost/local/python:3.11-bookworm
MIN_FREE_KB=$((4 * 1024 * 1024)) # the base, the build stages and the image

skip() {
    echo "image build and container smoke test SKIPPED: $*"
    exit 0
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
began=$SECONDS

if ! command -v podman >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        skip "podman is not installed, and installing it needs root and apt-get"
    fi
    echo "installing podman, runc and mmdebstrap (apt-get)"
    get() { DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q podman runc mmdebstrap >"$log" 2>&1; }
    if ! get && ! { timeout 300 apt-get update -q >"$log" 2>&1 && get; }; then
        skip "apt-get could not install podman: $(tail -n 1 "$log")"
    fi
fi

storage=$(podman info --format '{{.Store.GraphRoot}}' 2>/dev/null || echo /var/lib/containers)
mkdir -p "$storage"
free_kb=$(df -Pk "$storage" | awk 'NR == 2 { print $4 }')
[ "$free_kb" -ge "$MIN_FREE_KB" ] || skip "only $((free_kb / 1024)) MiB free under $storage (needs 4 GiB)"

base=${PYTHON_IMAGE:-}
if [ -z "$base" ]; then
    if podman image exists python:3.12-slim ||
        timeout 120 podman pull -q docker.io/library/python:3.12-slim >"$log" 2>&1; then
        base=python:3.12-slim
    elif podman image exists "$LOCAL_BASE"; then
        base=$LOCAL_BASE
    else
        echo "python:3.12-slim cannot be pulled ($(tail -n 1 "$log")); making $LOCAL_BASE with mmdebstrap"
        command -v mmdebstrap >/dev/null || skip "no base image: python:3.12-slim cannot be pulled and mmdebstrap is missing"
        if ! (set -o pipefail && timeout 600 mmdebstrap --variant=apt --include=python3,python3-venv,ca-certificates \
            bookworm - 2>"$log" | podman import - "$LOCAL_BASE" >/dev/null); then
            podman rmi -f "$LOCAL_BASE" >/dev/null 2>&1 || true
            skip "no base image: python:3.12-slim cannot be pulled and mmdebstrap failed: $(tail -n 1 "$log")"
        fi
        base=$LOCAL_BASE
    fi
fi
echo "base image: $base (ready in $((SECONDS - began)) s)"

mounts=()
seen=" "
for file in /etc/pip.conf "${PIP_CONFIG_FILE:-}" "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$file" ] && [ -f "$file" ] && [[ $seen != *" $file "* ]]; then
        mounts+=("--volume $file:$file:ro")
        seen+="$file "
    fi
done
export PYTHON_IMAGE=$base
export PODMAN_ARGS="--network host ${mounts[*]:-} ${PODMAN_ARGS:-}"
# The build's own output (every pip line) only when something fails; its summary lines always.
if ! bash deploy/build.sh >"$log" 2>&1; then
    tail -n 100 "$log"
    echo "image build or container smoke test FAILED after $((SECONDS - began)) s"
    exit 1
fi
grep -E '^(building|smoke test|built)' "$log"
podman image prune -f >/dev/null 2>&1 || true # earlier builds' layers
echo "image build and container smoke test passed in $((SECONDS - began)) s"
