"""Policy checks on the deployment files that no schema expresses (run by deploy/check.sh).

    python deploy/policy.py dockerfile deploy/Dockerfile
    python deploy/policy.py compose deploy/compose.yaml
    python deploy/policy.py k8s RENDERED.yaml        # `kubectl kustomize deploy/k8s` output, or the files
    python deploy/policy.py split RENDERED.yaml OUT  # OUT: every document that is not a CRD (keda.sh)

Each mode prints nothing and exits 0 when every rule holds, else one line per broken rule and exits 1.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

UID = 10001
DEFAULT_JOB_TIMEOUT = 60
APP_ENTRYPOINT = ["concur-postback"]


def _duration_seconds(value: str | int) -> float:
    """Compose durations: "90s", "1m30s", "1h", or a bare number of seconds."""
    if isinstance(value, int):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"not a duration: {value!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def check_dockerfile(path: Path) -> list[str]:
    text = path.read_text()
    lines = [
        ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines() if ln.strip() and not ln.startswith("#")
    ]
    errors: list[str] = []
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    if len(froms) < 2:
        errors.append("Dockerfile: expected a multi-stage build (builder + runtime)")
    if not any("pip wheel" in ln for ln in lines):
        errors.append("Dockerfile: the builder stage must build wheels with `pip wheel`")
    if not all("--no-cache-dir" in ln for ln in lines if re.search(r"pip (install|wheel)", ln)):
        errors.append("Dockerfile: every pip install/wheel needs --no-cache-dir")

    def instruction(name: str) -> list[str]:
        return [ln[len(name) :].strip() for ln in lines if ln.upper().startswith(name + " ")]

    entry = instruction("ENTRYPOINT")
    if not entry or json.loads(entry[-1]) != APP_ENTRYPOINT:
        errors.append(f"Dockerfile: ENTRYPOINT must be the exec form {json.dumps(APP_ENTRYPOINT)}")
    cmd = instruction("CMD")
    if not cmd or json.loads(cmd[-1])[:1] != ["serve"]:
        errors.append('Dockerfile: CMD must be the exec form ["serve", ...]')
    users = instruction("USER")
    if not users or users[-1].split(":")[0] != str(UID):
        errors.append(f"Dockerfile: the last USER must be the numeric UID {UID}")
    if "8000" not in " ".join(instruction("EXPOSE")).split():
        errors.append("Dockerfile: EXPOSE 8000 missing")
    checks = instruction("HEALTHCHECK")
    if not checks:
        errors.append("Dockerfile: HEALTHCHECK missing")
    else:
        exec_form = re.search(r"CMD (\[.*\])$", checks[-1])
        if not exec_form:
            errors.append("Dockerfile: HEALTHCHECK must use the exec form")
        else:
            argv = json.loads(exec_form.group(1))
            if argv[:2] != ["python3", "-c"] or "/healthz" not in argv[2]:
                errors.append("Dockerfile: HEALTHCHECK must run python3 -c against /healthz")
            else:
                try:
                    compile(argv[2], "HEALTHCHECK", "exec")
                except SyntaxError as exc:
                    errors.append(f"Dockerfile: HEALTHCHECK code does not compile: {exc}")
    return errors


def check_compose(path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text())
    services: dict[str, Any] = doc.get("services", {})
    errors: list[str] = []
    for name in ("redis", "web", "worker"):
        if name not in services:
            errors.append(f"compose: service {name!r} missing")
    if errors:
        return errors
    redis_cmd = " ".join(map(str, services["redis"].get("command", [])))
    if "--appendonly yes" not in redis_cmd or "--maxmemory-policy noeviction" not in redis_cmd:
        errors.append("compose: redis needs --appendonly yes and --maxmemory-policy noeviction")
    if "redis-cli" not in " ".join(services["redis"].get("healthcheck", {}).get("test", [])):
        errors.append("compose: redis healthcheck must use redis-cli ping")
    if not any(":/data" in str(v) for v in services["redis"].get("volumes", [])):
        errors.append("compose: redis needs a volume on /data")
    for name in ("web", "worker"):
        svc = services[name]
        env = svc.get("environment", {})
        url = str(env.get("REDIS_URL", ""))
        if not (url.startswith("redis://:${REDIS_PASSWORD") and url.endswith("@redis:6379/0")):
            errors.append(f"compose: {name}: REDIS_URL must be redis://:${{REDIS_PASSWORD}}@redis:6379/0")
        if "TOKEN_ENCRYPTION_KEY" not in str(env.get("TOKEN_ENCRYPTION_KEY", "")):
            errors.append(f"compose: {name}: TOKEN_ENCRYPTION_KEY must come from the environment")
        for key in ("POSTBACK_SECRET", "SINK_HTTP_SECRET"):
            value = env.get(key)
            if value is not None and (value == "" or value.endswith(":-}")):
                errors.append(f"compose: {name}: {key} must not default to an empty string")
        if svc.get("depends_on", {}).get("redis", {}).get("condition") != "service_healthy":
            errors.append(f"compose: {name}: depends_on redis must wait for service_healthy")
        if "container_name" in svc:
            errors.append(f"compose: {name}: container_name prevents --scale")
    if services["worker"].get("command") != ["worker"]:
        errors.append('compose: worker command must be ["worker"]')
    if not any("8000" in str(p) for p in services["web"].get("ports", [])):
        errors.append("compose: web must publish port 8000")
    if "healthcheck" not in services["web"]:
        errors.append("compose: web needs a healthcheck")
    timeout = int(services["worker"].get("environment", {}).get("JOB_TIMEOUT_SECONDS", DEFAULT_JOB_TIMEOUT))
    grace = _duration_seconds(services["worker"].get("stop_grace_period", "10s"))
    if grace <= timeout:
        errors.append(
            f"compose: worker stop_grace_period ({grace:g}s) must exceed JOB_TIMEOUT_SECONDS ({timeout})"
        )
    for name, profile in (("simulator", "simulator"), ("rq-exporter", None)):
        if name in services and not services[name].get("profiles"):
            errors.append(f"compose: {name} must sit under a profile ({profile or 'any'})")
    return errors


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _check_pod(name: str, pod: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    psc = pod.get("securityContext", {})
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        errors.append(f"k8s: {name}: pod seccompProfile must be RuntimeDefault")
    for c in pod.get("containers", []):
        sc = {**psc, **c.get("securityContext", {})}
        where = f"k8s: {name}/{c['name']}"
        expected = {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        }
        for key, want in expected.items():
            if sc.get(key) != want:
                errors.append(f"{where}: securityContext.{key} must be {want}")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            errors.append(f"{where}: capabilities must drop ALL")
        if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(f"{where}: seccompProfile must be RuntimeDefault")
        tmp_mounts = [m["name"] for m in c.get("volumeMounts", []) if m.get("mountPath") == "/tmp"]  # noqa: S108 a path in a manifest
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        if not any(m in empty_dirs for m in tmp_mounts):
            errors.append(f"{where}: needs an emptyDir on /tmp (read-only root filesystem)")
        if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
            errors.append(f"{where}: resources requests and limits required")
    return errors


def check_k8s(path: Path) -> list[str]:
    docs = _load_all(path)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    errors: list[str] = []
    for kind in ("ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget", "ScaledObject"):
        if kind not in by_kind:
            errors.append(f"k8s: no {kind}")
    if errors:
        return errors
    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    web = next((d for n, d in deployments.items() if n.endswith("-web")), None)
    worker = next((d for n, d in deployments.items() if n.endswith("-worker")), None)
    if web is None or worker is None:
        return ["k8s: expected a *-web and a *-worker Deployment"]
    config = by_kind["ConfigMap"][0]["data"]
    timeout = int(config.get("JOB_TIMEOUT_SECONDS", DEFAULT_JOB_TIMEOUT))

    for dep in (web, worker):
        errors += _check_pod(dep["metadata"]["name"], dep["spec"]["template"]["spec"])

    web_c = web["spec"]["template"]["spec"]["containers"][0]
    if web_c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        errors.append("k8s: web livenessProbe must GET /healthz")
    if web_c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        errors.append("k8s: web readinessProbe must GET /readyz")
    worker_pod = worker["spec"]["template"]["spec"]
    if worker_pod["containers"][0].get("args") != ["worker"]:
        errors.append('k8s: worker args must be ["worker"]')
    if worker_pod.get("terminationGracePeriodSeconds", 30) <= timeout:
        errors.append(
            f"k8s: worker terminationGracePeriodSeconds must exceed JOB_TIMEOUT_SECONDS ({timeout})"
        )

    web_labels = web["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        obj = by_kind[kind][0]
        sel = obj["spec"]["selector"]
        sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
        if not sel or any(web_labels.get(k) != v for k, v in sel.items()):
            errors.append(f"k8s: {kind} selector does not select the web pods")
    if by_kind["PodDisruptionBudget"][0]["spec"].get("minAvailable") != 1:
        errors.append("k8s: PodDisruptionBudget minAvailable must be 1")

    errors += _check_secret(config, by_kind["Secret"][0].get("stringData", {}))
    if "replicas" in worker["spec"]:
        errors.append("k8s: the worker Deployment must not set replicas: KEDA owns the count")

    so = by_kind["ScaledObject"][0]["spec"]
    if so["scaleTargetRef"]["name"] != worker["metadata"]["name"]:
        errors.append("k8s: ScaledObject must target the worker Deployment")
    if so.get("minReplicaCount", 0) > so.get("maxReplicaCount", 100):
        errors.append("k8s: ScaledObject minReplicaCount > maxReplicaCount")
    lists = {t["metadata"].get("listName") for t in so["triggers"] if t["type"] == "redis"}
    if "cp:inbox" not in lists:
        errors.append("k8s: ScaledObject needs a redis trigger on cp:inbox")
    for t in so["triggers"]:
        env_name = t["metadata"].get("addressFromEnv")
        if env_name and env_name not in config:
            errors.append(f"k8s: ScaledObject addressFromEnv {env_name} is not in the ConfigMap")
    return errors


def _check_secret(config: dict[str, str], secret: dict[str, str]) -> list[str]:
    errors = []
    if "REDIS_URL" in config:
        errors.append("k8s: REDIS_URL (it may hold a password) belongs in the Secret, not the ConfigMap")
    for key in ("REDIS_URL", "TOKEN_ENCRYPTION_KEY", "POSTBACK_SECRET", "SINK_HTTP_SECRET"):
        if key not in secret:
            errors.append(f"k8s: Secret lacks {key}")
    for key in secret:
        if key in config:
            errors.append(f"k8s: {key} is both in the ConfigMap and the Secret")
    return errors


def split(path: Path, out: Path) -> list[str]:
    docs = [d for d in _load_all(path) if not d.get("apiVersion", "").startswith("keda.sh/")]
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return [] if docs else [f"{path}: no Kubernetes documents"]


def main(argv: list[str]) -> int:
    modes = {"dockerfile": check_dockerfile, "compose": check_compose, "k8s": check_k8s}
    if len(argv) == 3 and argv[0] == "split":
        errors = split(Path(argv[1]), Path(argv[2]))
    elif len(argv) == 2 and argv[0] in modes:
        errors = modes[argv[0]](Path(argv[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
