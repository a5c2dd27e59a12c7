"""The deployment files agree with the code: setting names exist, values parse, the policy holds.

The schema and lint checks (hadolint, compose-spec, kubernetes-validate) run in deploy/check.sh; these
need only what the test environment has (PyYAML, jsonschema).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from concur_postback.config import Settings, load_settings
from concur_postback.tokens import generate_key

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
NOT_SETTINGS = {"KEDA_REDIS_ADDRESS", "KEDA_REDIS_PASSWORD", "REDIS_PASSWORD"}  # KEDA's and Redis's


def _policy() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_policy", DEPLOY / "policy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _configmap() -> dict[str, str]:
    return next(d for d in _manifests() if d["kind"] == "ConfigMap")["data"]


def _compose_env() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return dict(doc["services"]["worker"]["environment"])


def test_policy_holds_for_dockerfile_and_compose() -> None:
    policy = _policy()
    assert policy.check_dockerfile(DEPLOY / "Dockerfile") == []
    assert policy.check_compose(DEPLOY / "compose.yaml") == []


def test_policy_holds_for_manifests(tmp_path: Path) -> None:
    policy = _policy()
    rendered = tmp_path / "all.yaml"
    rendered.write_text(yaml.safe_dump_all(_manifests()))
    assert policy.check_k8s(rendered) == []


def test_policy_catches_a_short_worker_grace_period(tmp_path: Path) -> None:
    policy = _policy()
    compose = tmp_path / "compose.yaml"
    compose.write_text(
        (DEPLOY / "compose.yaml").read_text().replace("stop_grace_period: 90s", "stop_grace_period: 1m")
    )
    assert any("stop_grace_period" in e for e in policy.check_compose(compose))


@pytest.mark.parametrize("source", ["configmap", "compose", "secret"])
def test_every_variable_is_a_setting(source: str) -> None:
    if source == "configmap":
        names = set(_configmap())
    elif source == "compose":
        names = set(_compose_env())
    else:
        names = set(next(d for d in _manifests() if d["kind"] == "Secret")["stringData"])
    fields = {name.upper() for name in Settings.model_fields}
    assert names - NOT_SETTINGS <= fields, f"unknown settings (ignored silently): {names - fields}"


def test_configmap_values_parse() -> None:
    values = {k.lower(): v for k, v in _configmap().items() if k not in NOT_SETTINGS}
    settings = load_settings(**values, token_encryption_key=generate_key())
    assert settings.queue_name == "concur-postback"
    assert (
        settings.job_timeout_seconds
        < next(
            d for d in _manifests() if d["metadata"]["name"].endswith("-worker") and d["kind"] == "Deployment"
        )["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    )


def test_scaledobject_matches_its_schema() -> None:
    schema = json.loads((DEPLOY / "schemas" / "scaledobject.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    scaled = yaml.safe_load((K8S / "scaledobject.yaml").read_text())
    jsonschema.validate(scaled, schema)
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, schema)


def test_scaledobject_watches_the_real_keys() -> None:
    from concur_postback.inbox import INBOX_KEY  # noqa: PLC0415

    scaled = yaml.safe_load((K8S / "scaledobject.yaml").read_text())
    lists = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
    assert lists == {INBOX_KEY}
