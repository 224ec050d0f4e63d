"""k8s/: every rendered manifest is schema-valid, and the deployment holds together.

Rendering is `kubectl kustomize` (the real kustomize, built into kubectl); the
schemas are kubernetes-validate's bundled, offline copies, strict (unknown
fields are errors), for the oldest Kubernetes these manifests support. Without
kubectl the rendered checks skip, and each manifest file is still validated on
its own with every kustomization reference resolved.
"""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from gateway.pipeline.loader import load_policy
from gateway.settings import Settings
from tests.deploy.dockerfile import DOCKERFILE, ROOT, parse

K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest supported: preStop `sleep` is on by default from 1.30
TARGETS = {
    "base": "base",
    "redis": "overlays/redis",
    "standalone": "overlays/standalone",
    # The composition docs/deploying.md shows: standalone gateway + one Redis.
    "standalone+redis": "test-standalone-redis",
}
WITH_REDIS = ("redis", "standalone+redis")
SIDECAR = ("base", "redis")
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SETTING_FIELDS = {"DISTILL_GUARD_" + name.upper(): name for name in Settings.model_fields}

Doc = dict[str, Any]


# -- rendering ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of k8s/ with a secrets.env (as an operator writes it) and one composed overlay."""
    root = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, root, ignore=shutil.ignore_patterns("secrets.env"))
    example = (K8S / "base" / "secrets.env.example").read_text()
    (root / "base" / "secrets.env").write_text(
        example.replace("REPLACE_ME", "0123456789abcdef"))
    composed = root / TARGETS["standalone+redis"]
    composed.mkdir()
    (composed / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../overlays/standalone]\ncomponents: [../components/redis]\n")
    return root


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not on PATH: rendered-manifest checks need `kubectl kustomize` "
                    "(the per-file schema checks still ran)")
    return kubectl


def _kustomize(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_kubectl(), "kustomize", str(path)], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def rendered(tree: Path) -> dict[str, list[Doc]]:
    out: dict[str, list[Doc]] = {}
    for target, path in TARGETS.items():
        result = _kustomize(tree / path)
        assert result.returncode == 0, f"{target}: {result.stderr}"
        out[target] = [d for d in yaml.safe_load_all(result.stdout) if d]
    return out


def _get(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"one {kind} {name or ''}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def _gateway_deployment(docs: list[Doc]) -> Doc:
    return _get(docs, "Deployment", "distill-guard")


def _container(deployment: Doc, name: str) -> Doc:
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert name in containers, list(containers)
    return containers[name]


def _gateway_env(docs: list[Doc]) -> dict[str, str]:
    """The gateway container's environment, as the kubelet assembles it from envFrom."""
    env: dict[str, str] = {}
    for source in _container(_gateway_deployment(docs), "gateway").get("envFrom", []):
        if "configMapRef" in source:
            env.update(_get(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            data = _get(docs, "Secret", source["secretRef"]["name"])["data"]
            env.update({k: base64.b64decode(v).decode() for k, v in data.items()})
    return env


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _validate(doc: Doc) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


# -- schema validity ------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_rendered_manifests_are_schema_valid(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    assert docs
    errors = []
    for doc in docs:
        try:
            _validate(doc)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_the_validator_catches_mistakes(rendered: dict[str, list[Doc]]) -> None:
    """The strict schemas are really applied: a typo and a wrong type both fail."""
    deployment = _gateway_deployment(rendered["base"])
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containres"] = []
    wrong_type = copy.deepcopy(deployment)
    _container(wrong_type, "gateway")["ports"][0]["containerPort"] = "eighty"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            _validate(broken)


def test_secrets_env_is_required(tree: Path, tmp_path: Path) -> None:
    """No secrets.env, no manifests: nothing is deployed with a public default secret."""
    bare = tmp_path / "k8s"
    shutil.copytree(tree, bare, ignore=shutil.ignore_patterns("secrets.env"))
    result = _kustomize(bare / "base")
    assert result.returncode != 0 and "secrets.env" in result.stderr


def _kustomizations() -> Iterator[Path]:
    yield from sorted(K8S.rglob("kustomization.yaml"))


def _is_patch(path: Path) -> bool:
    for kustomization in _kustomizations():
        spec = yaml.safe_load(kustomization.read_text())
        for patch in spec.get("patches", []):
            if "path" in patch and (kustomization.parent / patch["path"]).resolve() == path:
                return True
    return False


@pytest.mark.parametrize("kustomization", list(_kustomizations()),
                         ids=lambda p: str(p.parent.relative_to(K8S)))
def test_each_file_valid_and_every_reference_resolves(kustomization: Path) -> None:
    """Without a renderer: references exist, resource files are schema-valid on their own."""
    here = kustomization.parent
    spec = yaml.safe_load(kustomization.read_text())
    refs = [*spec.get("resources", []), *spec.get("components", []),
            *(p["path"] for p in spec.get("patches", []) if "path" in p)]
    for generator in (*spec.get("configMapGenerator", []), *spec.get("secretGenerator", [])):
        refs += [f.split("=", 1)[-1] for f in generator.get("files", [])]
        refs += generator.get("envs", [])
    for ref in refs:
        path = here / ref
        if ref == "secrets.env":  # the operator writes it; the example must exist
            path = here / "secrets.env.example"
        assert path.exists(), f"{kustomization.relative_to(ROOT)}: {ref} does not exist"
        if path.is_dir():
            assert (path / "kustomization.yaml").exists(), ref
    for ref in spec.get("resources", []):
        path = here / ref
        if path.is_file() and not _is_patch(path.resolve()):
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            assert docs, ref
            for doc in docs:
                _validate(doc)


# -- the sidecar pattern ---------------------------------------------------------

@pytest.mark.parametrize("target", SIDECAR)
def test_sidecar_model_on_localhost_service_on_gateway(rendered: dict[str, list[Doc]],
                                                       target: str) -> None:
    docs = rendered[target]
    deployment = _gateway_deployment(docs)
    names = [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert names == ["model", "gateway"]
    model, gateway = _container(deployment, "model"), _container(deployment, "gateway")
    assert "ports" not in model  # nothing of the model is published
    assert "PLACEHOLDER" in (K8S / "base" / "deployment.yaml").read_text()
    upstream = urlsplit(_gateway_env(docs)["DISTILL_GUARD_UPSTREAM"])
    assert upstream.hostname == "127.0.0.1"
    service = _get(docs, "Service", "distill-guard")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _selects(service["spec"]["selector"], pod_labels)
    gateway_ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert gateway_ports == {"http": 8080}


def test_standalone_is_the_gateway_alone(rendered: dict[str, list[Doc]]) -> None:
    for target in ("standalone", "standalone+redis"):
        docs = rendered[target]
        deployment = _gateway_deployment(docs)
        assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == [
            "gateway"]
        upstream = urlsplit(_gateway_env(docs)["DISTILL_GUARD_UPSTREAM"])
        assert upstream.hostname not in ("127.0.0.1", "localhost")


# -- settings, policy, probes, shutdown -------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_gateway_settings_are_real_and_valid(rendered: dict[str, list[Doc]],
                                             target: str, tmp_path: Path) -> None:
    docs = rendered[target]
    env = _gateway_env(docs)
    assert set(env) <= set(SETTING_FIELDS), set(env) - set(SETTING_FIELDS)
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrules: []\n")
    settings = Settings(**{SETTING_FIELDS[k]: v for k, v in env.items()} | {"policy": policy})
    gateway = _container(_gateway_deployment(docs), "gateway")
    assert settings.host == "0.0.0.0"
    assert settings.port == gateway["ports"][0]["containerPort"]
    assert settings.workers == 1
    assert settings.redis.startswith("redis://")
    for secret in ("identity_secret", "watermark_secret", "admin_token"):
        assert f"DISTILL_GUARD_{secret.upper()}" in env, secret
    # The image's entrypoint is `distill-guard`; the container runs `serve` under it.
    assert gateway["args"] == ["serve"]
    image, _, tag = gateway["image"].partition(":")
    assert image == "distill-guard"
    assert tag == PROJECT_VERSION  # the tag `docker build -t` gives in docs/deploying.md


@pytest.mark.parametrize("target", TARGETS)
def test_policy_configmap_mounted_for_hot_reload(rendered: dict[str, list[Doc]],
                                                 target: str, tmp_path: Path) -> None:
    docs = rendered[target]
    deployment = _gateway_deployment(docs)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = _container(deployment, "gateway")["volumeMounts"]
    policy_path = PurePosixPath(_gateway_env(docs)["DISTILL_GUARD_POLICY"])
    [mount] = [m for m in mounts if m["mountPath"] == str(policy_path.parent)]
    assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates"
    configmap_name = volumes[mount["name"]]["configMap"]["name"]
    # Updated in place on apply (no hash suffix), so an update is a hot reload.
    assert configmap_name == "distill-guard-policy"
    configmap = _get(docs, "ConfigMap", configmap_name)
    text = configmap["data"][policy_path.name]
    (tmp_path / "policy.yaml").write_text(text)
    load_policy(tmp_path / "policy.yaml")  # raises PolicyError when invalid


def test_k8s_policy_is_the_default_with_fallback_replicas() -> None:
    ours = yaml.safe_load((K8S / "base" / "policy.yaml").read_text())
    default = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text())
    hpa = yaml.safe_load((K8S / "base" / "hpa.yaml").read_text())
    min_replicas = hpa["spec"]["minReplicas"]
    changed = 0
    for rule in default["rules"]:
        if "fallback_replicas" in rule.get("config", {}):
            rule["config"]["fallback_replicas"] = min_replicas
            changed += 1
    assert changed and ours == default


@pytest.mark.parametrize("target", TARGETS)
def test_probes(rendered: dict[str, list[Doc]], target: str) -> None:
    gateway = _container(_gateway_deployment(rendered[target]), "gateway")
    port_names = {p["name"] for p in gateway["ports"]}
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert gateway[probe]["httpGet"]["port"] in port_names


@pytest.mark.parametrize("target", TARGETS)
def test_shutdown_fits_the_grace_period(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    deployment = _gateway_deployment(docs)
    pod = deployment["spec"]["template"]["spec"]
    env = _gateway_env(docs)
    drain = float(env["DISTILL_GUARD_SHUTDOWN_DRAIN_SECONDS"])
    grace = float(env["DISTILL_GUARD_SHUTDOWN_GRACE_SECONDS"])
    assert drain > 0  # endpoints drop the pod before it stops accepting
    assert pod["terminationGracePeriodSeconds"] > drain + grace
    if target in SIDECAR:  # the model serves on while the gateway drains
        sleep = _container(deployment, "model")["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert drain + grace <= sleep < pod["terminationGracePeriodSeconds"]


# -- scaling, disruption, resources, security --------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_hpa_pdb_resources(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    deployment = _gateway_deployment(docs)
    pod = deployment["spec"]["template"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = _get(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "distill-guard"}
    assert hpa["spec"]["minReplicas"] >= 2
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "ContainerResource"
    assert metric["containerResource"]["name"] == "cpu"
    _container(deployment, metric["containerResource"]["container"])
    pdb = _get(docs, "PodDisruptionBudget")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            if c["name"] == "model":
                continue  # a placeholder: sized by its owner
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), (c["name"], bound)
    gateway = _container(deployment, "gateway")
    assert gateway["resources"]["limits"]["cpu"] == "1"  # one worker, about one core


@pytest.mark.parametrize("target", TARGETS)
def test_gateway_runs_as_the_images_user(rendered: dict[str, list[Doc]], target: str) -> None:
    _, stages = parse(DOCKERFILE.read_text())
    [user] = stages[-1].all("USER")
    uid, gid = (int(x) for x in user.args[0].split(":"))
    gateway = _container(_gateway_deployment(rendered[target]), "gateway")
    context = gateway["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
    assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"]
    assert not context["allowPrivilegeEscalation"]
    assert context["capabilities"]["drop"] == ["ALL"]


# -- network policy -------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_gateway_pods_admit_only_the_gateway_port(rendered: dict[str, list[Doc]],
                                                  target: str) -> None:
    docs = rendered[target]
    pod_labels = _gateway_deployment(docs)["spec"]["template"]["metadata"]["labels"]
    policy = _get(docs, "NetworkPolicy", "distill-guard")
    assert _selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ports == [8080]


@pytest.mark.parametrize("target", WITH_REDIS)
def test_only_the_gateway_reaches_redis(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    gateway_labels = _gateway_deployment(docs)["spec"]["template"]["metadata"]["labels"]
    redis = _get(docs, "Deployment", "distill-guard-redis")
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert redis["spec"]["replicas"] == 1
    policy = _get(docs, "NetworkPolicy", "distill-guard-redis")
    assert _selects(policy["spec"]["podSelector"]["matchLabels"], redis_labels)
    assert not _selects(policy["spec"]["podSelector"]["matchLabels"], gateway_labels)
    assert "Ingress" in policy["spec"]["policyTypes"]
    [rule] = policy["spec"]["ingress"]
    [source] = rule["from"]
    assert set(source) == {"podSelector"}  # no namespaceSelector, no ipBlock
    selector = source["podSelector"]["matchLabels"]
    assert _selects(selector, gateway_labels) and not _selects(selector, redis_labels)
    # Every other workload's pods are outside the selector.
    for d in docs:
        if d["kind"] == "Deployment" and d is not _gateway_deployment(docs):
            assert not _selects(selector, d["spec"]["template"]["metadata"]["labels"])
    # The gateway's Redis URL names this Service and port.
    url = urlsplit(_gateway_env(docs)["DISTILL_GUARD_REDIS"])
    service = _get(docs, "Service", url.hostname)
    assert _selects(service["spec"]["selector"], redis_labels)
    assert [p["port"] for p in service["spec"]["ports"]] == [url.port]


def test_secret_example_holds_only_placeholders() -> None:
    lines = [line for line in (K8S / "base" / "secrets.env.example").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    for line in lines:
        key, _, value = line.partition("=")
        assert key in SETTING_FIELDS and value == "REPLACE_ME", line
    assert "secrets.env" in (K8S / ".gitignore").read_text().splitlines()
