"""deploy/k8s: ports, probes, Services and settings files agree with the services' own settings and each other."""

from __future__ import annotations

import base64
import importlib
import sys
from pathlib import Path

import pytest
import yaml

from forgeway.server import registry
from forgeway.server.settings import build_settings
from forgeway.up import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "tools"))
import check_manifests  # noqa: E402

METRICS_PORT = 9090
SETTINGS = {  # `forgeway serve NAME` -> its settings class (the registry's engine class has it as .Settings)
    "gateway": "forgeway.gateway.settings:GatewaySettings",
    "hf": "forgeway.services.hf.settings:HFSettings",
    "llamacpp": "forgeway.services.llamacpp.settings:LlamaCppSettings",
    "openai": "forgeway.services.openai_proxy.settings:OpenAIProxySettings",
    "trl": "forgeway.services.trl.settings:TRLSettings",
}
class Build:
    """One overlay's kustomize output, indexed."""

    def __init__(self, overlay: Path):
        self.name = overlay.name
        self.resources = check_manifests.render(overlay)

    def all(self, kind: str) -> list[dict]:
        return [r for r in self.resources if r["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        found = [r for r in self.all(kind) if r["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def generated(self, kind: str, base_name: str) -> dict:
        found = [r for r in self.all(kind) if check_manifests.HASH_SUFFIX.sub("", r["metadata"]["name"]) == base_name]
        assert len(found) == 1, f"{self.name}: expected one generated {kind} {base_name}"
        return found[0]

    def workloads(self) -> dict[str, dict]:
        """Forgeway services by `forgeway serve` name: their Deployment or StatefulSet."""
        return {w["metadata"]["labels"]["app.kubernetes.io/name"]: w
                for w in self.all("Deployment") + self.all("StatefulSet")
                if w["metadata"]["labels"]["app.kubernetes.io/name"] in DEFAULT_PORTS}


@pytest.fixture(scope="module", params=check_manifests.overlays(), ids=lambda p: p.name)
def build(request) -> Build:
    return Build(request.param)


def pod(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def container(workload: dict) -> dict:
    return pod(workload)["containers"][0]


def env(c: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def port(c: dict, name: str) -> int:
    return next(p["containerPort"] for p in c["ports"] if p["name"] == name)


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_every_service_listens_where_its_probes_and_service_point(build: Build):
    assert set(build.workloads()) >= {"gateway", "hf", "llamacpp", "trl"}
    for name, workload in build.workloads().items():
        c, grpc_port = container(workload), DEFAULT_PORTS[name]
        assert c["name"] == name and c["image"].split(":")[0] == f"forgeway/{name}"
        assert env(c)["FORGEWAY_HOST"] == "0.0.0.0", f"{name} would listen on loopback only; probes would fail"
        assert int(env(c)["FORGEWAY_PORT"]) == port(c, "grpc") == grpc_port
        assert c["readinessProbe"]["grpc"] == {"port": grpc_port}, name
        if name == "openai":  # NOT_SERVING while its upstream is unreachable: not ready, but not to be restarted
            assert c["livenessProbe"]["tcpSocket"] == {"port": "grpc"} and "startupProbe" not in c
        else:
            for probe in ("startupProbe", "livenessProbe"):
                assert c[probe]["grpc"] == {"port": grpc_port}, f"{name} {probe}"
        assert int(env(c)["FORGEWAY_METRICS_PORT"]) == port(c, "metrics") == METRICS_PORT
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == METRICS_PORT and annotations["prometheus.io/path"] == "/metrics"
        service = build.get("Service", name)
        assert matches({"matchLabels": service["spec"]["selector"]}, workload["spec"]["template"]["metadata"]["labels"])
        assert matches(workload["spec"]["selector"], workload["spec"]["template"]["metadata"]["labels"])
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert ports["grpc"]["port"] == grpc_port and ports["grpc"]["targetPort"] == "grpc"
        assert ports["metrics"]["port"] == METRICS_PORT and ports["metrics"]["targetPort"] == "metrics"
        if workload["kind"] == "StatefulSet":
            assert workload["spec"]["serviceName"] == name


def test_backends_are_headless_and_the_gateway_is_not(build: Build):
    from forgeway.gateway.settings import GatewaySettings

    for name in build.workloads():
        headless = build.get("Service", name)["spec"].get("clusterIP") == "None"
        assert headless == (name != "gateway"), name
    gateway = container(build.workloads()["gateway"])
    http_default = GatewaySettings.model_fields["http_port"].default
    assert int(env(gateway)["FORGEWAY_HTTP_PORT"]) == port(gateway, "http") == http_default
    assert env(gateway)["FORGEWAY_HTTP_HOST"] == "0.0.0.0"
    http = next(p for p in build.get("Service", "gateway")["spec"]["ports"] if p["name"] == "http")
    assert http["port"] == http_default and http["targetPort"] == "http"


def config_file(build: Build, workload: dict) -> tuple[str, str]:
    """The --config file a service reads: (file name, contents), from the ConfigMap mounted at /etc/forgeway."""
    c = container(workload)
    assert c["args"][0] == "--config" and c["args"][1].startswith("/etc/forgeway/"), c["args"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/forgeway")
    volume = next(v for v in pod(workload)["volumes"] if v["name"] == mount["name"])
    config_map = build.get("ConfigMap", volume["configMap"]["name"])
    file_name = c["args"][1].removeprefix("/etc/forgeway/")
    assert file_name in config_map["data"], f"{config_map['metadata']['name']} has no {file_name}"
    return file_name, config_map["data"][file_name]


def settings_class(name: str) -> type:
    if name in SETTINGS:
        module, _, attr = SETTINGS[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    return registry.load(name).Settings


@pytest.mark.parametrize("name", ["gateway", "hf", "llamacpp", "openai", "trl", "unsloth"])
def test_each_settings_file_and_env_is_accepted_by_the_service(build: Build, name: str, tmp_path, monkeypatch):
    workload = build.workloads().get(name)
    if workload is None:
        assert name in {"openai", "unsloth"}, f"{name} missing from {build.name}"
        pytest.skip(f"the {build.name} overlay does not run {name}")
    file_name, text = config_file(build, workload)
    (tmp_path / file_name).write_text(text)
    for key, value in env(container(workload)).items():
        if key.startswith("FORGEWAY_"):
            monkeypatch.setenv(key, secret_file(build, workload, value, tmp_path))
    settings = build_settings(settings_class(name), ["--config", str(tmp_path / file_name)])
    assert settings.port == DEFAULT_PORTS[name] and settings.host == "0.0.0.0"
    assert settings.metrics_port == METRICS_PORT and str(settings.home) == "/data"


def secret_file(build: Build, workload: dict, value: str, tmp_path: Path) -> str:
    """A path inside a mounted Secret becomes a real file with the Secret's value; other values stay as they are."""
    volumes = {v["name"]: v for v in pod(workload)["volumes"]}
    for mount in container(workload)["volumeMounts"]:
        volume = volumes.get(mount["name"], {})  # absent: a StatefulSet's volumeClaimTemplate
        if "secret" in volume and value.startswith(mount["mountPath"] + "/"):
            item = value.removeprefix(mount["mountPath"] + "/")
            key = next(i["key"] for i in volume["secret"].get("items", []) if i["path"] == item)
            data = build.get("Secret", volume["secret"]["secretName"])["data"][key]
            (tmp_path / item).write_bytes(base64.b64decode(data))
            return str(tmp_path / item)
    return value


def test_the_gateway_routes_to_every_backend_and_only_to_them(build: Build):
    _, text = config_file(build, build.workloads()["gateway"])
    backends = yaml.safe_load(text)["backends"]
    listed = set()
    for backend in backends:
        host, _, grpc_port = backend["address"].removeprefix("dns:///").rpartition(":")
        assert backend["address"].startswith("dns:///"), "a backend must be re-resolved to see every pod"
        assert backend["kind"] == backend["name"] == host
        service = build.get("Service", host)
        assert service["spec"]["clusterIP"] == "None"
        assert int(grpc_port) == next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
        listed.add(host)
    assert listed == set(build.workloads()) - {"gateway"}


def test_only_the_gateway_reaches_the_backends(build: Build):
    policy = build.get("NetworkPolicy", "backends-from-gateway")["spec"]
    gateway_labels = build.workloads()["gateway"]["spec"]["template"]["metadata"]["labels"]
    for name, workload in build.workloads().items():
        assert matches(policy["podSelector"], workload["spec"]["template"]["metadata"]["labels"]) == (name != "gateway")
    grpc_rule, metrics_rule = policy["ingress"]
    assert [p["port"] for p in grpc_rule["ports"]] == ["grpc"]
    assert len(grpc_rule["from"]) == 1 and matches(grpc_rule["from"][0]["podSelector"], gateway_labels)
    assert [p["port"] for p in metrics_rule["ports"]] == ["metrics"]


def test_disruption_budgets_and_autoscalers_cover_the_services(build: Build):
    for name, workload in build.workloads().items():
        budget = build.get("PodDisruptionBudget", name)["spec"]
        assert matches(budget["selector"], workload["spec"]["template"]["metadata"]["labels"])
        assert budget.get("maxUnavailable") == 1, "minAvailable on one replica would block node drains"
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in build.all("HorizontalPodAutoscaler")}
    inference = {n for n, w in build.workloads().items() if w["metadata"]["labels"]["app.kubernetes.io/component"]
                 in ("gateway", "inference")}
    assert scaled == inference and "gateway" in scaled
    for name in scaled:
        assert "replicas" not in build.get("Deployment", name)["spec"], f"{name}: the HPA owns the replica count"


def test_references_resolve_and_everything_is_in_the_namespace(build: Build):
    namespace = build.all("Namespace")[0]["metadata"]["name"]
    for resource in build.resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"].get("namespace") == namespace, resource["metadata"]["name"]
    claims = {r["metadata"]["name"] for r in build.all("PersistentVolumeClaim")}
    for resource in build.resources:
        for spec in _pod_specs(resource):
            templates = {t["metadata"]["name"] for t in resource.get("spec", {}).get("volumeClaimTemplates", [])}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for c in spec["containers"] + spec.get("initContainers", []):
                for mount in c.get("volumeMounts", []):
                    assert mount["name"] in volumes or mount["name"] in templates, (resource["metadata"]["name"], mount)
                for variable in (e for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})):
                    ref = variable["valueFrom"]["secretKeyRef"]
                    secret = build.get("Secret", ref["name"])
                    assert ref["key"] in secret.get("data", {}) or ref.get("optional"), ref
            for volume in volumes.values():
                if "configMap" in volume:
                    build.get("ConfigMap", volume["configMap"]["name"])
                if "secret" in volume:
                    build.get("Secret", volume["secret"]["secretName"])
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims
            if spec.get("serviceAccountName"):
                build.get("ServiceAccount", spec["serviceAccountName"])


def _pod_specs(resource: dict) -> list[dict]:
    if resource["kind"] == "PodTemplate":
        return [resource["template"]["spec"]]
    template = resource.get("spec", {}).get("template") if isinstance(resource.get("spec"), dict) else None
    return [template["spec"]] if template else []


def test_gpus_only_where_the_overlay_asks_for_them(build: Build):
    on_gpu = {"hf", "trl", "unsloth"} if build.name == "gpu" else set()
    for name, workload in build.workloads().items():
        limits = container(workload)["resources"]["limits"]
        assert ("nvidia.com/gpu" in limits) == (name in on_gpu), name
        assert container(workload)["image"].endswith("-cuda") == (name in on_gpu), name
        tolerated = any(t.get("key") == "nvidia.com/gpu" for t in pod(workload).get("tolerations", []))
        assert tolerated == (name in on_gpu), name
    worker = build.get("PodTemplate", "forgeway-training-job")["template"]["spec"]["containers"][0]
    assert ("nvidia.com/gpu" in worker["resources"].get("limits", {})) == bool(on_gpu)


def test_placeholder_secrets_hold_no_value(build: Build):
    for secret in build.all("Secret"):
        assert all(base64.b64decode(v) == b"" for v in secret.get("data", {}).values()), secret["metadata"]["name"]


def test_image_tags_follow_the_package_version():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    base = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "kustomization.yaml").read_text())
    assert {i["newTag"] for i in base["images"]} == {version}
    gpu = yaml.safe_load((ROOT / "deploy" / "k8s" / "overlays" / "gpu" / "kustomization.yaml").read_text())
    assert {i["newTag"] for i in gpu["images"]} == {f"{version}-cuda"}


def test_api_keys_from_the_secret_reach_the_gateway_settings(tmp_path, monkeypatch):
    from forgeway.gateway.settings import GatewaySettings

    gateway = Build(check_manifests.overlays()[0]).workloads()["gateway"]
    (variable,) = [e for e in container(gateway)["env"] if e["name"] == "FORGEWAY_API_KEYS"]
    assert variable["valueFrom"]["secretKeyRef"]["key"] == "api-keys.json"
    digest = "a" * 64  # the README's form: [{"name": ..., "sha256": <printf %s KEY | sha256sum>}]
    monkeypatch.setenv("FORGEWAY_API_KEYS", f'[{{"name": "alice", "sha256": "{digest}", "train": false}}]')
    (tmp_path / "forgeway.yaml").write_text("api_keys: []\n")
    settings = build_settings(GatewaySettings, ["--config", str(tmp_path / "forgeway.yaml")])
    assert [(k.name, k.sha256, k.train) for k in settings.api_keys] == [("alice", digest, False)]
