"""The deployment files under deploy/ are valid and consistent: offline, no cluster, no Docker.

The checks live in deploy/validate.py (also runnable as ``python deploy/validate.py``); these tests
run them and show that they catch the mistakes they are meant to catch. The YAML checks need
PyYAML, jsonschema and ray, which come with the optional ``[ray]`` extra: without them those tests
are skipped with the reason.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("deploy_validate", ROOT / "deploy" / "validate.py")
assert _spec is not None and _spec.loader is not None
validate = importlib.util.module_from_spec(_spec)
sys.modules["deploy_validate"] = validate
_spec.loader.exec_module(validate)


def run(check: Any, *args: Any) -> Any:
    """Run one check; a missing optional module skips the test with its reason."""
    try:
        return check(*args)
    except validate.Missing as missing:
        pytest.skip(str(missing))


def kuberay_objects() -> tuple[list[dict[str, Any]], dict[str, Any], str | None]:
    docs = []
    for name in ("redis.yaml", "raycluster.yaml", "gateway-service.yaml", "pdb.yaml"):
        docs += run(validate.load_documents, validate.KUBERAY / name)
    (secret,) = run(validate.load_documents, validate.KUBERAY / "templates" / "ray-auth-token-secret.yaml")
    return docs, secret, validate._dockerfile_workdir(validate.DEPLOY / "Dockerfile")


def the(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


# -- Dockerfile and scripts: no optional dependency ----------------------------------------------


def test_dockerfile_is_valid() -> None:
    assert validate.check_dockerfile() == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("ARG RAY_VERSION=2.60.0", "ARG RAY_VERSION=2.59.0"), "base image"),
        (("-py311-cpu", "-py310-cpu"), "base image"),
        (('pip install ".[ray]"', "pip install ."), "pip install .[ray]"),
        (("EXPOSE 8080", "EXPOSE 9000"), "EXPOSE 8080"),
        (("USER 1000:100", "USER root"), "non-root"),
        (("PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=1 RAY_AUTH_TOKEN=abc"), "bakes a secret"),
    ],
)
def test_dockerfile_check_catches(change: tuple[str, str], expected: str) -> None:
    text = (validate.DEPLOY / "Dockerfile").read_text()
    assert change[0] in text
    problems = validate.check_dockerfile_text(text.replace(change[0], change[1]))
    assert any(expected in problem for problem in problems), problems


def test_scripts_are_valid() -> None:
    assert validate.check_scripts() == []


def test_serve_options_parses_both_spellings() -> None:
    target, options = validate.serve_options(["app.py:server", "--port", "8080", "--host=0.0.0.0"])
    assert target == "app.py:server"
    assert options == {"--port": "8080", "--host": "0.0.0.0"}


# -- YAML: PyYAML, jsonschema, ray ---------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    assert run(validate.check_yaml_parses) == []


def test_ray_schema_ships_with_ray() -> None:
    path = run(validate.ray_schema_path)
    assert path.name == "ray-schema.json"
    assert path.is_file(), path


def test_ray_cluster_config_is_valid() -> None:
    assert run(validate.check_ray_cluster_config) == []


def ray_cluster_config() -> dict[str, Any]:
    (config,) = run(validate.load_documents, validate.DEPLOY / "ray-cluster.yaml")
    return config


def test_ray_cluster_check_catches_schema_errors() -> None:
    config = ray_cluster_config()
    config["head_node"] = {"InstanceType": "m5.large"}  # not a field of Ray's schema any more
    config["provider"]["worker_ips"] = "worker-1.mesh.example"  # must be a list
    problems = run(validate.check_ray_cluster, config)
    assert any("schema" in problem and "head_node" in problem for problem in problems), problems
    assert any("worker_ips" in problem for problem in problems), problems


def test_ray_cluster_check_catches_missing_token_and_gateways() -> None:
    config = ray_cluster_config()
    config["worker_start_ray_commands"] = [
        command.replace("RAY_AUTH_MODE=token ", "") for command in config["worker_start_ray_commands"]
    ]
    config["file_mounts"].pop("~/.ray/auth_token")
    config["head_start_ray_commands"] = [
        command.replace("--gateways 3", "--gateways 1") for command in config["head_start_ray_commands"]
    ]
    problems = run(validate.check_ray_cluster, config)
    for expected in ("without RAY_AUTH_MODE=token", "auth_token", "--gateways must be at least 3"):
        assert any(expected in problem for problem in problems), (expected, problems)


def test_kuberay_manifests_are_valid() -> None:
    assert run(validate.check_kuberay) == []


def test_kuberay_token_comes_from_the_secret_template() -> None:
    docs, secret, _ = kuberay_objects()
    cluster = the(docs, "RayCluster")
    groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    for group in groups:
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret["metadata"]["name"], "key": "auth_token"}
    assert secret["stringData"]["auth_token"] == ""  # no token in the repository


def mutated(mutate: Any) -> list[str]:
    docs, secret, workdir = kuberay_objects()
    docs, secret = copy.deepcopy(docs), copy.deepcopy(secret)
    mutate(docs, secret)
    return validate.check_kuberay_docs(docs, secret, workdir)


def head_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return the(docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


def worker_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return the(docs, "RayCluster")["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d, s: head_container(d).pop("readinessProbe"), "readinessProbe must GET /readyz"),
        (lambda d, s: worker_container(d).pop("livenessProbe"), "livenessProbe must GET /healthz"),
        (lambda d, s: worker_container(d)["lifecycle"].pop("preStop"), "preStop"),
        (
            lambda d, s: worker_container(d)["lifecycle"]["preStop"]["exec"].update(command=["sleep", "10"]),
            "preStop must run 'mesh-actors drain-node'",
        ),
        (lambda d, s: s["stringData"].update(auth_token="hunter2"), "must not carry a token"),
        (lambda d, s: s["metadata"].update(name="other"), "RAY_AUTH_TOKEN must come from Secret other"),
        (
            lambda d, s: the(d, "RayCluster")["spec"]["workerGroupSpecs"][0]["rayStartParams"].clear(),
            "metrics-export-port",
        ),
        (
            lambda d, s: the(d, "Service", "mesh-actors-gateway")["spec"]["selector"].update(
                {"ray.io/node-type": "worker"}
            ),
            "does not select the head pods",
        ),
        (lambda d, s: the(d, "RayCluster")["spec"].update(rayVersion="2.59.0"), "rayVersion"),
        (
            lambda d, s: the(d, "RayCluster")["spec"]["workerGroupSpecs"][0].update(
                replicas=5, maxReplicas=5
            ),
            "--gateways must be at least 6",
        ),
        (lambda d, s: the(d, "RayCluster")["metadata"].pop("annotations"), "overwrite-container-cmd"),
        (lambda d, s: the(d, "Service", "mesh-redis")["metadata"].update(name="cache"), "--redis-url host"),
    ],
)
def test_kuberay_check_catches(mutate: Any, expected: str) -> None:
    problems = mutated(mutate)
    assert any(expected in problem for problem in problems), problems
