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
#   PODMAN_RUN_ARGS arguments for every `podman run` of the smoke test (default: --ulimit
#                  nofile=N:N --ulimit nproc=4096:4096, N the host's hard limit up to 65536, as
#                  podman's own defaults are refused on many hosts).
#   SMOKE_PORT     port of the smoke test's postback listener on 127.0.0.1 (default: a free one).
#   SMOKE_COUNT    notifications the smoke test fires end to end (default 30).
#   REDIS_IMAGE    a Redis image for the smoke test (default: the redis-server inside this image).
#
# Without podman this prints what it needs and exits 0: there is nothing to build with.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
tag=${1:-concur-postback:${version:-latest}}
base=${PYTHON_IMAGE:-python:3.12-slim}

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

# Without systemd podman cannot schedule the HEALTHCHECK (it is run by hand below) and says so at
# every container start and stop: those lines are dropped.
# shellcheck disable=SC2086  # the *_ARGS variables are lists of arguments on purpose
pm() { podman ${PODMAN_GLOBAL_ARGS:-} "$@" 2> >(grep -v 'unable to get systemd connection' >&2); }
# podman's default open-file limit (1048576) is more than many hosts allow a container to ask for:
# unless PODMAN_RUN_ARGS says otherwise, the smoke test's containers get the host's own hard limit.
nofile=$(ulimit -Hn)
if [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ]; then nofile=65536; fi
run_args=${PODMAN_RUN_ARGS-"--ulimit nofile=$nofile:$nofile --ulimit nproc=4096:4096"}
# shellcheck disable=SC2086
run() { pm run $run_args "$@"; }

echo "building $tag from $base"
# --format docker keeps HEALTHCHECK (the OCI image format has no such field).
# shellcheck disable=SC2086
pm build --format docker --build-arg "PYTHON_IMAGE=$base" ${PODMAN_ARGS:-} \
    -f deploy/Dockerfile -t "$tag" .

echo "smoke test: $tag serve --help, worker --help"
run --rm "$tag" serve --help >/dev/null
run --rm "$tag" worker --help >/dev/null

# End to end, one container per process on the host's network (ports on 127.0.0.1 only): Redis (the
# image's own embedded redis-server unless REDIS_IMAGE names one), the simulator, `serve` with its
# admin listener, and a worker writing to a file sink on a bind-mounted directory. Notifications of
# every kind are fired at the postback URL; each must come out of the sink as an event.
count=${SMOKE_COUNT:-30}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
sim_port=$(free_port)
web_port=${SMOKE_PORT:-$(free_port)}
admin_port=$(free_port)
key=$(run --rm "$tag" genkey)
password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
out=$(mktemp -d)
chmod 0777 "$out" # the containers run as UID 10001
prefix=concur-postback-smoke-$$
names=()
cleanup() {
    for name in "${names[@]}"; do pm rm -f "$name" >/dev/null 2>&1 || true; done
    rm -rf "$out"
}
trap cleanup EXIT

# start NAME ARGS...: a detached container on the host's network.
start() {
    local name=$prefix-$1
    shift
    names+=("$name")
    run -d --name "$name" --network host "$@" >/dev/null
}

# await WHAT URL: until URL answers 2xx (60 s), or fail with every container's log.
await() {
    for _ in $(seq 1 120); do
        if python3 -c "import urllib.request; urllib.request.urlopen('$2', timeout=2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.5
    done
    fail "$1 did not answer at $2"
}

fail() {
    echo "smoke test FAILED: $1"
    for name in "${names[@]}"; do
        echo "--- $name"
        pm logs "$name" 2>&1 | tail -n 30
    done
    exit 1
}

echo "smoke test: redis, simulator, serve and worker containers; $count notifications end to end"
# The password goes in through stdin (as compose.yaml does), not onto a command line.
if [ -n "${REDIS_IMAGE:-}" ]; then
    # shellcheck disable=SC2016  # expanded by the container's shell
    start redis -e REDIS_PASSWORD="$password" --entrypoint sh "$REDIS_IMAGE" \
        -c 'printf "requirepass %s\n" "$REDIS_PASSWORD" | exec redis-server - --port "$0" --bind 127.0.0.1' "$redis_port"
else
    binary=$(run --rm --entrypoint python3 "$tag" -c \
        'from concur_postback.embedded import redis_server_binary; print(redis_server_binary())')
    # shellcheck disable=SC2016  # expanded by the container's shell
    start redis -e REDIS_PASSWORD="$password" --entrypoint sh "$tag" \
        -c 'printf "requirepass %s\n" "$REDIS_PASSWORD" | exec "$1" - --port "$0" --bind 127.0.0.1 --dir /tmp' \
        "$redis_port" "$binary"
fi
app_env=(-e "REDIS_URL=redis://:$password@127.0.0.1:$redis_port/0" -e "TOKEN_ENCRYPTION_KEY=$key"
    -e "CONCUR_BASE_URL=http://127.0.0.1:$sim_port" -e LOG_FORMAT=json)
start simulator "$tag" simulate --host 127.0.0.1 --port "$sim_port" --latency-ms 20
start web "${app_env[@]}" -e "ADMIN_PORT=$admin_port" "$tag" serve --host 127.0.0.1 --port "$web_port"
start worker "${app_env[@]}" -e SINKS=file:///out/events.jsonl -v "$out:/out" "$tag" worker
await "the simulator" "http://127.0.0.1:$sim_port/_simulator/requests"
await "serve's admin listener" "http://127.0.0.1:$admin_port/readyz"
echo "smoke test: GET /readyz ok (admin listener, Redis reachable)"
if pm healthcheck run "$prefix-web" >/dev/null 2>&1; then
    echo "smoke test: the image's HEALTHCHECK passes for serve"
else
    fail "the image's HEALTHCHECK failed for serve"
fi

# Concur sends some notifications twice: the acknowledged distinct ones are the "accepted" count.
fired=$(run --rm --network host "$tag" simulate fire --to "http://127.0.0.1:$web_port/postback" \
    --count "$count" --rate 0 --concur-url "http://127.0.0.1:$sim_port" 2>/dev/null) ||
    fail "simulate fire: not every postback acknowledged: $fired"
echo "smoke test: $fired"
accepted=$(sed -n 's/.*accepted \([0-9]*\).*/\1/p' <<<"$fired")
[ -n "$accepted" ] || fail "simulate fire said: $fired"
delivered() {
    python3 - "$out/events.jsonl" <<'PY'
import json, sys
try:
    lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
except FileNotFoundError:
    lines = []
print(len({json.loads(line)["notification_id"] for line in lines if line.strip()}))
PY
}
got=0
for _ in $(seq 1 120); do
    got=$(delivered)
    [ "$got" -ge "$accepted" ] && break
    sleep 0.5
done
[ "$got" -ge "$accepted" ] || fail "$got of $accepted acknowledged notifications reached the file sink in 60 s"
echo "smoke test: $got of $accepted acknowledged notifications delivered to the file sink"

for role in web worker; do
    began=$SECONDS
    pm stop --time 30 "$prefix-$role" >/dev/null
    code=$(pm inspect -f '{{.State.ExitCode}}' "$prefix-$role")
    echo "smoke test: $role stopped with SIGTERM in $((SECONDS - began))s (exit code $code)"
    [ "$code" = 0 ] || fail "$role exited with $code after SIGTERM"
done
echo "built $tag"
