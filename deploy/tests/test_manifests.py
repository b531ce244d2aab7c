"""Every overlay renders with kustomize, every object validates offline (Kubernetes' OpenAPI schemas through
kubernetes-validate; the prometheus-operator objects through the CRD schemas in deploy/k8s/crd-schemas),
and the fleet holds together: what a manifest refers to exists, selectors select pods, pods are locked
down, the grace period outlasts the drain, probes ask the role's health service, the autoscalers' metric
is one the adapter serves, and the precompute job's shards match its completions."""
from __future__ import annotations

import base64
import re

import jsonschema
import pytest
import yaml

from deploy_support import DEPLOY, EXTERNAL_SECRETS, OVERLAYS, objects, pod_specs, rendered, run, \
    server_containers, tool

CRD_DIR = DEPLOY / "k8s" / "crd-schemas"
CRD_SCHEMAS = {"ServiceMonitor": "servicemonitor", "PrometheusRule": "prometheusrule"}
ROLE_SERVICES = {"compress": "kvc.v1.Compressor", "cache": "kvc.v1.CacheService", "generate": "kvc.v1.Generator"}


def test_there_are_dev_and_production_overlays():
    assert {"dev", "production"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_validate_against_the_kubernetes_schemas(overlay, tmp_path):
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered(overlay))
    # --strict rejects fields the schema does not have; the schemas ship inside kubernetes-validate.
    result = run([tool("kubernetes-validate"), "--strict", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    core = [o for o in objects(overlay) if o["kind"] not in CRD_SCHEMAS]
    passed = re.findall(r"passed for resource (\S+)/(\S+)", result.stdout + result.stderr)
    rendered_names = [(o["kind"], o["metadata"]["name"]) for o in core]
    assert len(passed) == len(core), f"validated {passed}, rendered {rendered_names}"


def _strict(schema):
    """The schema with unknown fields refused, as the API server's strict field validation does."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_crd_objects_validate_against_the_in_tree_crd_schemas(overlay):
    found = set()
    for obj in objects(overlay):
        if obj["kind"] not in CRD_SCHEMAS:
            continue
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        schema = yaml.safe_load((CRD_DIR / f"{CRD_SCHEMAS[obj['kind']]}.schema.yaml").read_text())
        jsonschema.Draft202012Validator(_strict(schema)).validate(obj)
        found.add(obj["kind"])
    assert found == set(CRD_SCHEMAS)


def test_the_strict_crd_check_refuses_an_unknown_field():
    schema = yaml.safe_load((CRD_DIR / "servicemonitor.schema.yaml").read_text())
    monitor = next(o for o in objects("production") if o["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "15s"  # the field is `interval`
    with pytest.raises(jsonschema.ValidationError, match="scrapeInterval"):
        jsonschema.Draft202012Validator(_strict(schema)).validate(monitor)


def _env_value(overlay: str, container: dict, name: str) -> str | None:
    """A variable's value as the container sees it: env first, then envFrom ConfigMaps."""
    for e in container.get("env", []):
        if e["name"] == name and "value" in e:
            return e["value"]
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects(overlay) if o["kind"] == "ConfigMap"}
    for source in container.get("envFrom", []):
        if "configMapRef" in source and name in maps.get(source["configMapRef"]["name"], {}):
            return maps[source["configMapRef"]["name"]][name]
    return None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_outlasts_the_drain(overlay):
    containers = list(server_containers(overlay))
    assert containers
    for obj, pod, c in containers:
        drain = float(_env_value(overlay, c, "KVC_DRAIN_SECONDS") or 30)
        for arg in c.get("args", []):
            if arg.startswith("--drain-seconds="):
                drain = float(arg.split("=", 1)[1])
        assert pod["terminationGracePeriodSeconds"] > drain, obj["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_locked_down_with_resources(overlay):
    for obj, pod in pod_specs(overlay):
        name = obj["metadata"]["name"]
        assert pod.get("automountServiceAccountToken") is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), (name, c["name"])
            assert "memory" in c["resources"]["limits"], (name, c["name"])


def _roles(container: dict) -> list[str]:
    for arg in container.get("args", []):
        if arg.startswith("--roles="):
            return arg.split("=", 1)[1].split(",")
    raise AssertionError(f"kvc-server without --roles: {container.get('args')}")


def _probed_service(probe: dict) -> str:
    """The health service a probe asks: a gRPC probe's service, or `kvc health --service=ROLE`."""
    if "grpc" in probe:
        return probe["grpc"].get("service", "")
    command = probe["exec"]["command"]
    assert command[:2] == ["kvc", "health"], command
    services = [a.split("=", 1)[1] for a in command if a.startswith("--service=")]
    assert len(services) == 1, command
    return ROLE_SERVICES[services[0]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_the_health_service_of_a_role_the_pod_serves(overlay):
    for obj, _, c in server_containers(overlay):
        served = {ROLE_SERVICES[r] for r in _roles(c)}
        assert "readinessProbe" in c and "livenessProbe" in c, obj["metadata"]["name"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in c:
                service = _probed_service(c[kind])
                # "" is the whole process: SERVING once the model is loaded (a startup gate).
                assert service in served or (kind == "startupProbe" and service == ""), (obj["metadata"]["name"], kind)


def _references(obj: dict):
    """("Secret" | "ConfigMap", name) for everything a workload's pods read."""
    pod = obj["spec"]["template"]["spec"]
    for v in pod.get("volumes", []):
        if "secret" in v:
            yield "Secret", v["secret"]["secretName"]
        if "configMap" in v:
            yield "ConfigMap", v["configMap"]["name"]
        if "persistentVolumeClaim" in v:
            yield "PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]
    for c in pod["containers"]:
        for e in c.get("env", []):
            ref = e.get("valueFrom", {})
            if "secretKeyRef" in ref:
                yield "Secret", ref["secretKeyRef"]["name"]
            if "configMapKeyRef" in ref:
                yield "ConfigMap", ref["configMapKeyRef"]["name"]
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                yield "ConfigMap", source["configMapRef"]["name"]
            if "secretRef" in source:
                yield "Secret", source["secretRef"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_a_pod_reads_is_in_the_overlay_or_made_by_the_operator(overlay):
    present = {(o["kind"], o["metadata"]["name"]) for o in objects(overlay)}
    sts_claims = {("PersistentVolumeClaim", t["metadata"]["name"]) for o in objects(overlay)
                  if o["kind"] == "StatefulSet" for t in o["spec"].get("volumeClaimTemplates", [])}
    for obj, _ in pod_specs(overlay):
        for ref in _references(obj):
            external = overlay == "production" and ref[0] == "Secret" and ref[1] in EXTERNAL_SECRETS
            assert ref in present or ref in sts_claims or external, (obj["metadata"]["name"], ref)


def _selects(selector: dict, labels: dict) -> bool:
    """A Service's plain label map or a LabelSelector's matchLabels (nothing here uses matchExpressions)."""
    wanted = selector["matchLabels"] if "matchLabels" in selector else selector
    return all(labels.get(k) == v for k, v in wanted.items())


SELECTOR_OF = {"Service": "selector", "PodDisruptionBudget": "selector", "NetworkPolicy": "podSelector"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_budgets_and_policies_select_pods(overlay):
    pods = [o["spec"]["template"]["metadata"]["labels"]
            for o in objects(overlay) if o["kind"] in ("Deployment", "StatefulSet", "Job")]
    for obj in objects(overlay):
        if obj["kind"] in SELECTOR_OF:
            selector = obj["spec"][SELECTOR_OF[obj["kind"]]]
            assert any(_selects(selector, labels) for labels in pods), (obj["kind"], obj["metadata"]["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workload_selectors_match_their_pod_templates(overlay):
    for obj in objects(overlay):
        if obj["kind"] in ("Deployment", "StatefulSet"):
            pod_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert _selects(obj["spec"]["selector"], pod_labels), obj["metadata"]["name"]


def test_production_runs_each_role_in_its_own_deployment_with_models_on_gpus():
    deployments = {o["metadata"]["name"]: o for o in objects("production") if o["kind"] == "Deployment"}
    roles = {name: _roles(c) for (o, _, c) in server_containers("production") for name in [o["metadata"]["name"]]}
    assert roles == {"kvc-compress": ["compress"], "kvc-generate": ["generate"], "kvc-cache": ["cache"]}
    for name in ("kvc-compress", "kvc-generate"):
        pod = deployments[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1, name
        assert "--device=cuda" in container["args"], name
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"]), name
    cache = deployments["kvc-cache"]["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in cache["resources"]["limits"]


def test_dev_is_one_pod_with_every_role_on_a_file_store():
    servers = list(server_containers("dev"))
    assert len(servers) == 1
    obj, _, c = servers[0]
    assert obj["spec"]["replicas"] == 1
    assert sorted(_roles(c)) == ["cache", "compress", "generate"]
    assert any(a.startswith("--store=file://") for a in c["args"])
    dev_secret = next(o for o in objects("dev") if o["kind"] == "Secret")
    assert base64.b64decode(dev_secret["data"]["tokens"]).decode() == "dev-token"


def test_autoscalers_scale_on_a_metric_the_adapter_rule_serves():
    adapter = yaml.safe_load((DEPLOY / "k8s" / "prometheus-adapter" / "values.yaml").read_text())
    served = {r["name"]["as"] for r in adapter["rules"]["custom"]}
    hpas = [o for o in objects("production") if o["kind"] == "HorizontalPodAutoscaler"]
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} == {"kvc-compress", "kvc-generate"}
    for h in hpas:
        for m in h["spec"]["metrics"]:
            assert m["type"] == "Pods" and m["pods"]["metric"]["name"] in served, h["metadata"]["name"]


def test_precompute_job_is_indexed_with_one_shard_per_completion():
    job = next(o for o in objects("production") if o["kind"] == "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    container = spec["template"]["spec"]["containers"][0]
    shards = next(e["value"] for e in container["env"] if e["name"] == "SHARDS")
    assert int(shards) == spec["completions"] >= spec["parallelism"]
    script = " ".join(container["args"])
    assert "$JOB_COMPLETION_INDEX" in script and "kvc precompute" in script
