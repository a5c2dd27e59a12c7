#!/usr/bin/env bash
# Build the concur-postback image with podman (daemonless) and smoke-test it:
#
#   bash deploy/build.sh [TAG]            TAG defaults to concur-postback:<version from pyproject.toml>
#
# Environment:
#   PYTHON_IMAGE   base image for both stages (default python:3.12-slim). It must be available
#                  locally or pullable: where registries cannot be reached, build a Debian bookworm
#                  base with python3 and python3-venv using mmdebstrap (see deploy/README.md) and
#                  pass its name here.
#   PODMAN_GLOBAL_ARGS  options for every podman command, before the subcommand (e.g. --runtime runc
#                  on hosts without user namespaces).
#   PODMAN_ARGS    extra arguments for `podman build` (e.g. --network host, or --volume
#                  /etc/pip.conf:/etc/pip.conf:ro and the CA bundle to reach a local package index).
#   PODMAN_RUN_ARGS extra arguments for every `podman run` of the smoke test (e.g.
#                  --ulimit nofile=65536:65536 --ulimit nproc=4096:4096 where the defaults are refused).
#   SMOKE_PORT     host port for the smoke test (default 18000).
#
# Without podman this prints what it needs and exits 0: there is nothing to build with.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
tag=${1:-concur-postback:${version:-latest}}
base=${PYTHON_IMAGE:-python:3.12-slim}
port=${SMOKE_PORT:-18000}

if ! command -v podman >/dev/null; then
    cat <<EOF
deploy/build.sh: podman not found; nothing built.
  Needs: podman (apt-get install podman buildah), and the base image $base available locally
  or pullable from its registry. Where registry pulls fail, make a local base with mmdebstrap
  (Debian bookworm + python3 + python3-venv, see deploy/README.md) and set PYTHON_IMAGE to it.
  With Docker instead: docker build -f deploy/Dockerfile -t $tag .
EOF
    exit 0
fi

# shellcheck disable=SC2086  # the *_ARGS variables are lists of arguments on purpose
pm() { podman ${PODMAN_GLOBAL_ARGS:-} "$@"; }
# shellcheck disable=SC2086
run() { pm run ${PODMAN_RUN_ARGS:-} "$@"; }

echo "building $tag from $base"
# --format docker keeps HEALTHCHECK (the OCI image format has no such field).
# shellcheck disable=SC2086
pm build --format docker --build-arg "PYTHON_IMAGE=$base" ${PODMAN_ARGS:-} \
    -f deploy/Dockerfile -t "$tag" .

echo "smoke test: $tag serve --help, worker --help"
run --rm "$tag" serve --help >/dev/null
run --rm "$tag" worker --help >/dev/null

# /healthz needs no Redis (it only says the process is alive), but `serve` refuses to start without
# REDIS_URL and a valid TOKEN_ENCRYPTION_KEY; an unreachable Redis makes /readyz answer 503.
key=$(run --rm "$tag" genkey)
name=concur-postback-smoke-$$
run -d --name "$name" -p "127.0.0.1:$port:8000" \
    -e REDIS_URL=redis://127.0.0.1:1/0 -e TOKEN_ENCRYPTION_KEY="$key" "$tag" >/dev/null
trap 'pm rm -f "$name" >/dev/null 2>&1 || true' EXIT

ok=
for _ in $(seq 1 30); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=2)" \
        2>/dev/null; then
        ok=1
        break
    fi
    sleep 1
done
if [ -z "$ok" ]; then
    echo "smoke test FAILED: /healthz did not answer; container log:"
    pm logs "$name" | tail -n 40
    exit 1
fi
echo "smoke test: GET /healthz ok"

start=$SECONDS
pm stop --time 30 "$name" >/dev/null
echo "smoke test: stopped with SIGTERM in $((SECONDS - start))s (exit code $(pm inspect -f '{{.State.ExitCode}}' "$name"))"
echo "built $tag"
