"""Offline checks of the deployment files under deploy/ (no network, no cluster, no Docker daemon).

    python deploy/validate.py

- every YAML file parses (PyYAML);
- deploy/ray-cluster.yaml against Ray's own cluster-config JSON schema (``ray-schema.json`` inside
  the installed ``ray`` package) and through the config pipeline that ``ray up`` runs before it
  touches a machine, plus the mesh-actors specifics (token, serve command, versions);
- deploy/kuberay/: the fields KubeRay and Kubernetes need and the links between the objects (Secret
  name and key, Service and PDB selectors against the pod labels, ports, probes, drain settings);
- deploy/Dockerfile: base image and Ray version, ``pip install`` of the project, port, user, no
  secrets;
- deploy/scripts/: bash and Python syntax.

When they are installed, it also runs ``kubectl kustomize``, ``kubernetes-validate`` (core objects,
and the RayCluster pod templates as Pods), ``hadolint`` and ``shellcheck``; they are optional.
PyYAML, jsonschema and ray are optional too (the ``[ray]`` extra brings all three): a check that
needs a missing one raises :class:`Missing`, which the tests turn into a skip.

tests/test_deploy_manifests.py runs the same checks under pytest.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DEPLOY",
    "RAY_VERSION",
    "Missing",
    "check_dockerfile",
    "check_dockerfile_text",
    "check_kuberay",
    "check_kuberay_docs",
    "check_ray_cluster",
    "check_ray_cluster_config",
    "check_scripts",
    "check_yaml_parses",
    "ray_schema_path",
    "serve_options",
]

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
KUBERAY = DEPLOY / "kuberay"
RAY_VERSION = "2.60.0"
"""The Ray every deployment file pins (image tag, rayVersion, ``ray up`` setup)."""
PYTHON_TAG = "py311"
GATEWAY_PORT = 8080
SECRET_KEY = "auth_token"
KUBERAY_METRICS_DEFAULT = 8080  # KubeRay's default metrics-export-port: must not be the gateways' port
MAX_RAYCLUSTER_NAME = 53  # KubeRay rejects longer names (its Service names get suffixes)
SERVE_FLAGS = ("--runtime", "--address", "--host", "--port", "--gateways", "--room-shards",
               "--connection-shards", "--redis-url")  # fmt: skip


class Missing(Exception):
    """An optional module that a check needs is not installed."""


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as error:
        raise Missing("PyYAML is not installed (it comes with the [ray] extra)") from error
    return yaml


def load_documents(path: Path) -> list[Any]:
    """All YAML documents of ``path`` (empty documents dropped)."""
    yaml = _yaml()
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def yaml_files() -> list[Path]:
    return sorted(p for pattern in ("*.yaml", "*.yml") for p in DEPLOY.rglob(pattern))


def check_yaml_parses() -> list[str]:
    yaml = _yaml()
    problems = []
    files = yaml_files()
    if not files:
        problems.append("no YAML files under deploy/")
    for path in files:
        try:
            if not load_documents(path):
                problems.append(f"{_rel(path)}: no YAML document")
        except yaml.YAMLError as error:
            problems.append(f"{_rel(path)}: {error}")
    return problems


# -- the mesh-actors serve command ---------------------------------------------------------------


def serve_options(args: Iterable[str]) -> tuple[str | None, dict[str, str]]:
    """``MODULE:ATTR`` and the ``--option value`` pairs of a serve command line (after the verb)."""
    target: str | None = None
    options: dict[str, str] = {}
    items = list(args)
    index = 0
    while index < len(items):
        item = items[index]
        if item.startswith("--"):
            name, sep, value = item.partition("=")
            if not sep and index + 1 < len(items) and not items[index + 1].startswith("--"):
                value = items[index + 1]
                index += 1
            options[name] = value
        elif target is None:
            target = item
        index += 1
    return target, options


def _check_serve(where: str, target: str | None, options: Mapping[str, str]) -> list[str]:
    problems = []
    if not target or ":" not in target:
        problems.append(f"{where}: no MODULE:ATTR in the serve command")
    missing = [flag for flag in SERVE_FLAGS if flag not in options]
    if missing:
        problems.append(f"{where}: serve command lacks {', '.join(missing)}")
    expected = {"--runtime": "ray", "--address": "auto", "--host": "0.0.0.0"}
    for flag, value in expected.items():
        if flag in options and options[flag] != value:
            problems.append(f"{where}: {flag} is {options[flag]!r}, expected {value!r}")
    port = options.get("--port", "")
    if port and not (port.isdigit() and 0 < int(port) < 32768):
        problems.append(f"{where}: --port {port} must be below 32768 (the ephemeral range starts there)")
    for flag in ("--gateways", "--room-shards", "--connection-shards"):
        value = options.get(flag, "1")
        if not (value.isdigit() and int(value) >= 1):
            problems.append(f"{where}: {flag} must be a positive integer, not {value!r}")
    redis_url = options.get("--redis-url", "")
    if redis_url and not redis_url.startswith(("redis://", "rediss://")):
        problems.append(f"{where}: --redis-url {redis_url!r} is not a redis:// URL")
    return problems


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# -- ray up ----------------------------------------------------------------------------------------


def ray_schema_path() -> Path:
    """Ray's cluster-config JSON schema, as shipped in the installed ray package."""
    try:
        import ray.autoscaler
    except ImportError as error:
        raise Missing("ray is not installed (pip install '.[ray]')") from error
    return Path(ray.autoscaler.__file__).resolve().parent / "ray-schema.json"


def check_ray_cluster_config(path: Path = DEPLOY / "ray-cluster.yaml") -> list[str]:
    docs = load_documents(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        return [f"{_rel(path)}: expected one mapping"]
    return check_ray_cluster(docs[0])


def check_ray_cluster(config: dict[str, Any]) -> list[str]:
    """Ray's schema and ``ray up``'s own preparation, then the mesh-actors specifics."""
    try:
        import jsonschema
    except ImportError as error:
        raise Missing("jsonschema is not installed (it comes with the [ray] extra)") from error
    schema_path = ray_schema_path()
    problems: list[str] = []
    if not schema_path.is_file():
        return [f"Ray's schema is missing: {schema_path}"]
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    for issue in sorted(validator.iter_errors(config), key=lambda e: [str(part) for part in e.path]):
        location = "/".join(str(part) for part in issue.path) or "(top)"
        problems.append(f"ray-cluster.yaml: schema: {location}: {issue.message}")
    if problems:
        return problems

    # What `ray up` does before it connects anywhere: merge the provider's defaults, turn the
    # local provider's IP lists into node types, validate again. No cache file is written.
    try:
        from ray.autoscaler._private.commands import _bootstrap_config

        prepared = _bootstrap_config(json.loads(json.dumps(config)), no_config_cache=True)
    except ImportError as error:
        raise Missing(f"ray's autoscaler is not importable: {error}") from error
    except Exception as error:  # e.g. click.ClickException from cli_logger.abort
        return [f"ray-cluster.yaml: rejected by ray up's config pipeline: {type(error).__name__}: {error}"]
    if "available_node_types" not in prepared:
        problems.append("ray-cluster.yaml: ray up's pipeline produced no node types")

    provider = config.get("provider", {})
    workers = provider.get("worker_ips") or []
    if not workers:
        problems.append("ray-cluster.yaml: provider.worker_ips lists no worker")
    mounts = config.get("file_mounts", {})
    if not any(remote.endswith(".ray/auth_token") for remote in mounts):
        problems.append("ray-cluster.yaml: file_mounts must carry ~/.ray/auth_token to every node")

    setup = " ".join(config.get("setup_commands", []))
    if f"ray[default]=={RAY_VERSION}" not in setup:
        problems.append(f"ray-cluster.yaml: setup_commands must pin ray[default]=={RAY_VERSION}")
    if "mesh-actors[ray]" not in setup:
        problems.append("ray-cluster.yaml: setup_commands must pip install the project with [ray]")

    head = config.get("head_start_ray_commands", [])
    worker = config.get("worker_start_ray_commands", [])
    head_start = [c for c in head if "ray start --head" in c]
    worker_start = [c for c in worker if "ray start" in c]
    if not head_start:
        problems.append("ray-cluster.yaml: head_start_ray_commands has no `ray start --head`")
    if not worker_start:
        problems.append("ray-cluster.yaml: worker_start_ray_commands has no `ray start`")
    elif not any("--address=$RAY_HEAD_IP:6379" in c for c in worker_start):
        problems.append("ray-cluster.yaml: workers must join $RAY_HEAD_IP:6379")
    for command in head_start + worker_start:
        if "RAY_AUTH_MODE=token" not in command:
            problems.append(f"ray-cluster.yaml: `{command}` runs without RAY_AUTH_MODE=token")

    serve = [c for c in head if "mesh-ray-node serve" in c]
    if len(serve) != 1:
        problems.append("ray-cluster.yaml: head_start_ray_commands must start the supervisor once")
        return problems
    if "RAY_AUTH_MODE=token" not in serve[0]:
        problems.append("ray-cluster.yaml: the supervisor runs without RAY_AUTH_MODE=token")
    if head_start and head.index(serve[0]) < head.index(head_start[0]):
        problems.append("ray-cluster.yaml: the supervisor must start after Ray")
    words = shlex.split(serve[0])
    verb_at = next(i for i, word in enumerate(words) if word.endswith("mesh-ray-node"))
    target, options = serve_options(words[verb_at + 2 :])
    problems += _check_serve("ray-cluster.yaml", target, options)
    nodes = 1 + len(workers)
    expected = re.search(r"MESH_EXPECTED_NODES=(\d+)", serve[0])
    if not expected or int(expected.group(1)) != nodes:
        problems.append(f"ray-cluster.yaml: MESH_EXPECTED_NODES must be {nodes} (head + worker_ips)")
    if _int(options.get("--gateways")) < nodes:
        problems.append(f"ray-cluster.yaml: --gateways must be at least {nodes}, one per node")
    return problems


# -- KubeRay ---------------------------------------------------------------------------------------


def check_kuberay(directory: Path = KUBERAY) -> list[str]:
    kustomization = directory / "kustomization.yaml"
    problems: list[str] = []
    (kust,) = load_documents(kustomization)
    resources = kust.get("resources", [])
    listed = {directory / name for name in resources}
    present = {p for p in directory.glob("*.yaml") if p.name != "kustomization.yaml"}
    for path in sorted(present - listed):
        problems.append(f"kuberay/{path.name} is not listed in kustomization.yaml")
    for path in sorted(listed - present):
        problems.append(f"kustomization.yaml lists kuberay/{path.name}, which does not exist")
    docs = [doc for path in sorted(listed & present) for doc in load_documents(path)]
    templates = [
        doc for path in sorted((directory / "templates").glob("*.yaml")) for doc in load_documents(path)
    ]
    secrets = [doc for doc in templates if isinstance(doc, dict) and doc.get("kind") == "Secret"]
    if len(secrets) != 1:
        problems.append("kuberay/templates/ must hold exactly one Secret template (the Ray token)")
        return problems
    workdir = _dockerfile_workdir(DEPLOY / "Dockerfile")
    return problems + check_kuberay_docs(docs, secrets[0], workdir)


def check_kuberay_docs(docs: list[Any], secret: dict[str, Any], image_workdir: str | None) -> list[str]:
    """Structure and cross-references of the applied objects and the token Secret template."""
    problems: list[str] = []
    for doc in [*docs, secret]:
        if not isinstance(doc, dict):
            problems.append(f"not a mapping: {doc!r:.60}")
            continue
        for field in ("apiVersion", "kind"):
            if not doc.get(field):
                problems.append(f"an object lacks {field}")
        if not (doc.get("metadata") or {}).get("name"):
            problems.append(f"a {doc.get('kind')} lacks metadata.name")
    if problems:
        return problems

    def of_kind(kind: str) -> list[dict[str, Any]]:
        return [doc for doc in docs if doc["kind"] == kind]

    secret_name = secret["metadata"]["name"]
    token = (secret.get("stringData") or {}).get(SECRET_KEY, (secret.get("data") or {}).get(SECRET_KEY))
    if token is None:
        problems.append(f"Secret template {secret_name} has no key {SECRET_KEY}")
    elif token != "":
        problems.append(f"Secret template {secret_name} must not carry a token: leave {SECRET_KEY} empty")
    if any(doc["kind"] == "Secret" for doc in docs):
        problems.append("a Secret is applied with the manifests: the token must be created separately")

    clusters = of_kind("RayCluster")
    if len(clusters) != 1:
        return [*problems, f"expected one RayCluster, found {len(clusters)}"]
    cluster = clusters[0]
    name = cluster["metadata"]["name"]
    spec = cluster.get("spec") or {}
    if cluster["apiVersion"] != "ray.io/v1":
        problems.append(f"RayCluster apiVersion is {cluster['apiVersion']}, expected ray.io/v1")
    if len(name) > MAX_RAYCLUSTER_NAME:
        problems.append(f"RayCluster name {name!r} is longer than {MAX_RAYCLUSTER_NAME} characters")
    if (cluster["metadata"].get("annotations") or {}).get("ray.io/overwrite-container-cmd") != "true":
        problems.append('RayCluster needs the annotation ray.io/overwrite-container-cmd: "true"')
    if str(spec.get("rayVersion")) != RAY_VERSION:
        problems.append(f"RayCluster spec.rayVersion is {spec.get('rayVersion')!r}, expected {RAY_VERSION!r}")
    if spec.get("enableInTreeAutoscaling"):
        problems.append("RayCluster: the autoscaler must stay off (the supervisor places gateways once)")

    head = spec.get("headGroupSpec") or {}
    groups = spec.get("workerGroupSpecs") or []
    if not head.get("template"):
        problems.append("RayCluster: headGroupSpec.template is missing")
        return problems
    if head.get("serviceType", "ClusterIP") != "ClusterIP":
        problems.append(
            "RayCluster: keep headGroupSpec.serviceType ClusterIP (headless, not-ready addresses)"
        )
    if not groups:
        problems.append("RayCluster: workerGroupSpecs is empty")
    pod_groups: list[tuple[str, dict[str, Any], dict[str, Any]]] = [("head", head, head["template"])]
    replicas_total = 0
    for group in groups:
        label = f"worker group {group.get('groupName')!r}"
        if not group.get("groupName"):
            problems.append("RayCluster: a worker group lacks groupName")
        replicas = _int(group.get("replicas"), -1)
        low, high = _int(group.get("minReplicas"), 0), _int(group.get("maxReplicas"), 2**31)
        if not (0 <= low <= replicas <= high):
            problems.append(f"RayCluster: {label} needs minReplicas <= replicas <= maxReplicas")
        replicas_total += max(replicas, 0)
        if not group.get("template"):
            problems.append(f"RayCluster: {label} has no template")
            continue
        pod_groups.append((label, group, group["template"]))

    images = set()
    pod_labels: dict[str, dict[str, str]] = {}
    head_args: list[str] = []
    head_env: dict[str, Any] = {}
    for label, group, template in pod_groups:
        pod_spec = template.get("spec") or {}
        containers = pod_spec.get("containers") or []
        if not containers:
            problems.append(f"RayCluster {label}: no containers")
            continue
        ray = containers[0]  # KubeRay: the Ray container is the first one
        where = f"RayCluster {label} container {ray.get('name')!r}"
        if not ray.get("image"):
            problems.append(f"{where}: no image")
        images.add(ray.get("image"))
        pod_labels[label] = {**(template.get("metadata") or {}).get("labels", {}), "ray.io/cluster": name}
        pod_labels[label]["ray.io/node-type"] = "head" if label == "head" else "worker"

        command = ray.get("command") or []
        args = [str(arg) for arg in ray.get("args") or []]
        expected_entry = f"{image_workdir}/deploy/scripts/mesh-ray-node" if image_workdir else None
        if not command or not command[0].endswith("deploy/scripts/mesh-ray-node"):
            problems.append(f"{where}: command must be deploy/scripts/mesh-ray-node")
        elif expected_entry and command[0] != expected_entry:
            problems.append(
                f"{where}: command {command[0]} is not where the image puts it ({expected_entry})"
            )
        mode = "head" if label == "head" else "worker"
        if not args or args[0] != mode:
            problems.append(f"{where}: the first argument must be {mode!r}")
        if label == "head":
            head_args = args[1:]

        ports = {p.get("name"): p.get("containerPort") for p in ray.get("ports") or []}
        if ports.get("gateway") != GATEWAY_PORT:
            problems.append(f"{where}: needs a port named 'gateway' with containerPort {GATEWAY_PORT}")
        metrics_param = (group.get("rayStartParams") or {}).get("metrics-export-port")
        metrics = _int(metrics_param, KUBERAY_METRICS_DEFAULT)
        if metrics == GATEWAY_PORT:
            problems.append(
                f"{where}: set rayStartParams metrics-export-port off {GATEWAY_PORT} (KubeRay default)"
            )
        if ports.get("metrics") != metrics:
            problems.append(f"{where}: the port named 'metrics' must be {metrics} (else KubeRay adds 8080)")

        env = {item.get("name"): item for item in ray.get("env") or []}
        if label == "head":
            head_env = env
        if (env.get("RAY_AUTH_MODE") or {}).get("value") != "token":
            problems.append(f"{where}: RAY_AUTH_MODE must be 'token'")
        ref = ((env.get("RAY_AUTH_TOKEN") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        if ref.get("name") != secret_name or ref.get("key") != SECRET_KEY:
            problems.append(f"{where}: RAY_AUTH_TOKEN must come from Secret {secret_name} key {SECRET_KEY}")

        for probe_name, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = (ray.get(probe_name) or {}).get("httpGet") or {}
            if get.get("path") != path or get.get("port") not in ("gateway", GATEWAY_PORT):
                problems.append(f"{where}: {probe_name} must GET {path} on port {GATEWAY_PORT}")
        if not ((ray.get("startupProbe") or {}).get("httpGet") or {}).get("path"):
            problems.append(f"{where}: needs a startupProbe (Ray and the gateway placement take a while)")
        pre_stop = ((ray.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}
        if not pre_stop.get("command"):
            problems.append(f"{where}: needs a lifecycle.preStop hook")
        elif label != "head" and "mesh-actors drain-node" not in " ".join(map(str, pre_stop["command"])):
            problems.append(f"{where}: preStop must run 'mesh-actors drain-node' (graceful gateway moves)")
        grace = _int(pod_spec.get("terminationGracePeriodSeconds"), 30)
        drain = _int((env.get("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S") or {}).get("value"), 30)
        if grace <= drain + 10:
            problems.append(f"{where}: terminationGracePeriodSeconds {grace} leaves no time to drain")

    if len(images) != 1:
        problems.append(f"RayCluster: head and workers must run one image, found {sorted(map(str, images))}")

    target, options = serve_options(head_args)
    problems += _check_serve("RayCluster head", target, options)
    nodes = 1 + replicas_total
    if _int(options.get("--gateways")) < nodes:
        problems.append(
            f"RayCluster head: --gateways must be at least {nodes}: every Ray pod is probed on :8080"
        )
    if _int((head_env.get("MESH_EXPECTED_NODES") or {}).get("value")) != nodes:
        problems.append(f"RayCluster head: MESH_EXPECTED_NODES must be {nodes} (head + worker replicas)")

    def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in selector.items())

    services = {svc["metadata"]["name"]: svc for svc in of_kind("Service")}
    deployments = of_kind("Deployment")
    redis_host = re.sub(r"^rediss?://(?:[^@/]*@)?([^:/]+).*$", r"\1", options.get("--redis-url", ""))
    gateway_services = [
        svc for svc in services.values()
        if any(p.get("targetPort") in ("gateway", GATEWAY_PORT) for p in svc["spec"].get("ports", []))
    ]  # fmt: skip
    if len(gateway_services) != 1:
        problems.append("expected one Service for the gateways (targetPort 'gateway')")
    for svc in gateway_services:
        selector = svc["spec"].get("selector") or {}
        if not selector:
            problems.append(f"Service {svc['metadata']['name']}: empty selector")
        for label, labels in pod_labels.items():
            if not selects(selector, labels):
                problems.append(f"Service {svc['metadata']['name']} does not select the {label} pods")
        if not any(p.get("port") == GATEWAY_PORT for p in svc["spec"].get("ports", [])):
            problems.append(f"Service {svc['metadata']['name']} must expose port {GATEWAY_PORT}")

    if redis_host not in services:
        problems.append(f"--redis-url host {redis_host!r} is not a Service of these manifests")
    else:
        redis_svc = services[redis_host]
        pods = [d["spec"]["template"]["metadata"].get("labels", {}) for d in deployments]
        if not any(selects(redis_svc["spec"].get("selector") or {"": ""}, labels) for labels in pods):
            problems.append(f"Service {redis_host} selects no Deployment's pods")
        if not any(p.get("port") == 6379 for p in redis_svc["spec"].get("ports", [])):
            problems.append(f"Service {redis_host} must expose 6379")
    for deployment in deployments:
        match = deployment["spec"]["selector"].get("matchLabels") or {}
        if not selects(match, deployment["spec"]["template"]["metadata"].get("labels", {})):
            problems.append(f"Deployment {deployment['metadata']['name']}: selector misses its own pods")

    budgets = of_kind("PodDisruptionBudget")
    if not budgets:
        problems.append("no PodDisruptionBudget")
    for budget in budgets:
        match = (budget["spec"].get("selector") or {}).get("matchLabels") or {}
        if not match or not any(selects(match, labels) for labels in pod_labels.values()):
            problems.append(f"PodDisruptionBudget {budget['metadata']['name']} selects no Ray pod")
    return problems


# -- Dockerfile ------------------------------------------------------------------------------------


def _dockerfile_workdir(path: Path) -> str | None:
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return workdirs[-1] if workdirs else None


def check_dockerfile(path: Path = DEPLOY / "Dockerfile") -> list[str]:
    problems = check_dockerfile_text(path.read_text(encoding="utf-8"))
    ignore = path.with_name(path.name + ".dockerignore")
    if not ignore.is_file():
        return [*problems, f"{_rel(ignore)} is missing (the build context would include .git)"]
    patterns = [
        line.strip() for line in ignore.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]  # fmt: skip
    if ".git" not in patterns:
        problems.append(f"{_rel(ignore)} must exclude .git")
    needed = ("pyproject.toml", "README.md", "mesh_actors", "examples", "deploy/scripts")
    for pattern in patterns:
        for name in needed:
            if pattern.rstrip("/") in (name, name.split("/")[0]) and name != ".git":
                problems.append(f"{_rel(ignore)} excludes {name}, which the image needs")
    return problems


def check_dockerfile_text(text: str) -> list[str]:
    problems: list[str] = []
    lines = _logical_lines(text)
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.MULTILINE))
    froms = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    if len(froms) != 1:
        problems.append(f"expected one FROM, found {len(froms)}")
    else:
        image = re.sub(
            r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), froms[0]
        )
        pattern = rf"rayproject/ray:{re.escape(RAY_VERSION)}-{PYTHON_TAG}(-cpu)?"
        if not re.fullmatch(pattern, image):
            problems.append(f"base image {image} is not rayproject/ray:{RAY_VERSION}-{PYTHON_TAG}[-cpu]")
    if args.get("RAY_VERSION", RAY_VERSION) != RAY_VERSION:
        problems.append(f"ARG RAY_VERSION is {args['RAY_VERSION']}, expected {RAY_VERSION}")
    installs = [line for line in lines if re.search(r"\bpip3?\s+install\b", line)]
    if not any(re.search(r"""["']?\.\[ray\]["']?""", line) for line in installs):
        problems.append("no `pip install .[ray]` of the project")
    if not any("ray==${RAY_VERSION}" in line or f"ray=={RAY_VERSION}" in line for line in installs):
        problems.append("pip install must pin ray to the base image's version")
    if not any(re.fullmatch(rf"EXPOSE\s+(.*\s)?{GATEWAY_PORT}(/tcp)?(\s.*)?", line) for line in lines):
        problems.append(f"no EXPOSE {GATEWAY_PORT}")
    users = [line.split(None, 1)[1].strip() for line in lines if line.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image must end as a non-root USER")
    for line in lines:
        keyword = line.split(None, 1)[0].upper() if line else ""
        if keyword in ("ENV", "ARG"):
            for key, value in re.findall(r"(\w+)[= ]([^\s\\]+)", line.split(None, 1)[1]):
                secretish = re.search(r"TOKEN|SECRET|PASSW|PRIVATE|CREDENTIAL|API_?KEY", key, re.IGNORECASE)
                if secretish and key != "RAY_AUTH_MODE" and value:
                    problems.append(f"{keyword} {key} bakes a secret into the image")
        if keyword in ("COPY", "ADD") and re.search(r"auth_token|\.ray/|\.ssh", line):
            problems.append(f"`{line}` copies credentials into the image")
    return problems


def _logical_lines(text: str) -> list[str]:
    """Dockerfile instructions with continuations joined and comments dropped."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


# -- scripts ---------------------------------------------------------------------------------------


def check_scripts() -> list[str]:
    problems = []
    node = DEPLOY / "scripts" / "mesh-ray-node"
    if not os.access(node, os.X_OK):
        problems.append(f"{_rel(node)} is not executable (chmod +x; git keeps the bit)")
    bash = shutil.which("bash")
    if bash:
        result = subprocess.run([bash, "-n", str(node)], capture_output=True, text=True, check=False)
        if result.returncode:
            problems.append(f"{_rel(node)}: bash -n: {result.stderr.strip()}")
    for script in sorted((DEPLOY / "scripts").glob("*.py")):
        try:
            compile(script.read_text(encoding="utf-8"), str(script), "exec")
        except SyntaxError as error:
            problems.append(f"{_rel(script)}: {error}")
    return problems


# -- optional external tools -------------------------------------------------------------------


def external_checks() -> list[tuple[str, str]]:
    """(check, result) of the optional tools that are installed; "skipped: ..." otherwise."""
    results: list[tuple[str, str]] = []

    def run(name: str, argv: list[str]) -> None:
        if not shutil.which(argv[0]):
            results.append((name, f"skipped: {argv[0]} not installed"))
            return
        done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
        output = (done.stdout + done.stderr).strip()
        results.append((name, "ok" if done.returncode == 0 else f"FAILED\n{output}"))

    run("kubectl kustomize deploy/kuberay", ["kubectl", "kustomize", str(KUBERAY)])
    run("hadolint deploy/Dockerfile", ["hadolint", str(DEPLOY / "Dockerfile")])
    run("shellcheck deploy/scripts/mesh-ray-node", ["shellcheck", str(DEPLOY / "scripts" / "mesh-ray-node")])
    try:
        import kubernetes_validate
    except ImportError:
        results.append(("kubernetes-validate", "skipped: pip install kubernetes-validate"))
        return results
    failures = []
    for path in [*sorted(KUBERAY.glob("*.yaml")), *sorted((KUBERAY / "templates").glob("*.yaml"))]:
        for doc in load_documents(path):
            if doc.get("kind") == "Kustomization":
                continue
            if doc.get("kind") == "RayCluster":
                # No RayCluster schema offline: check its pod templates as Pods.
                spec = doc["spec"]
                groups = [("head", spec["headGroupSpec"])] + [
                    (g["groupName"], g) for g in spec["workerGroupSpecs"]
                ]
                for group, value in groups:
                    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{group}"}}
                    pod["spec"] = value["template"]["spec"]
                    failures += _validate_k8s(kubernetes_validate, pod, f"{path.name} {group} pod template")
            else:
                failures += _validate_k8s(kubernetes_validate, doc, f"{path.name} {doc['kind']}")
    results.append(
        ("kubernetes-validate --strict", "ok" if not failures else "FAILED\n" + "\n".join(failures))
    )
    return results


def _validate_k8s(module: Any, doc: dict[str, Any], label: str) -> list[str]:
    try:
        module.validate(doc, module.utils.latest_version(), strict=True)
    except Exception as error:
        return [f"{label}: {str(error).splitlines()[0]}"]
    return []


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


CHECKS = {
    "YAML parses": check_yaml_parses,
    "ray-cluster.yaml (Ray schema + ray up pipeline)": check_ray_cluster_config,
    "kuberay/ manifests": check_kuberay,
    "Dockerfile": check_dockerfile,
    "scripts": check_scripts,
}


def main() -> int:
    failed = False
    for name, check in CHECKS.items():
        try:
            problems = check()
        except Missing as missing:
            print(f"skipped  {name}: {missing}")
            continue
        failed |= bool(problems)
        print(f"{'FAILED' if problems else 'ok':8} {name}")
        for problem in problems:
            print(f"         - {problem}")
    for name, result in external_checks():
        status, _, detail = result.partition("\n")
        failed |= status == "FAILED"
        if status.startswith("skipped: "):
            print(f"skipped  {name}: {status.removeprefix('skipped: ')}")
            continue
        print(f"{status:8} {name}")
        for line in detail.splitlines():
            print(f"         {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
