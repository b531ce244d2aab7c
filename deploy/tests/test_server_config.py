"""Every flag and environment variable a manifest gives kvc-server is one the server reads, with a value
it accepts: each kvc-server container of each overlay is replayed through `kvc-server --check-config`
with its args and the environment the pod would have (ConfigMaps resolved, $(VAR) expanded, Secrets the
operator makes given sample values)."""
from __future__ import annotations

import base64
import os
import re

import pytest

from deploy_support import OVERLAYS, objects, run, server_containers

# Values for the Secrets that production only names (docs/deploy.md makes them), shaped as in the docs.
SAMPLE_SECRETS = {
    ("kvc-store", "url"): "redis://:sample-password@kvc-redis:6379/0",
    ("kvc-auth", "tokens"): "sample-token-a,sample-token-b",
}


def _server() -> str:
    binary = os.environ.get("KVC_SERVER_BIN", "")
    assert binary, "KVC_SERVER_BIN is not set (deploy/CMakeLists.txt sets it)"
    return binary


def _secret_value(overlay: str, name: str, key: str) -> str:
    for o in objects(overlay):
        if o["kind"] == "Secret" and o["metadata"]["name"] == name:
            return base64.b64decode(o["data"][key]).decode()
    return SAMPLE_SECRETS[(name, key)]


def pod_environment(overlay: str, container: dict) -> dict[str, str]:
    """The variables the container starts with, as the kubelet builds them: envFrom, then env."""
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects(overlay) if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = _secret_value(overlay, ref["name"], ref["key"])
    return env


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def check_config(args: list[str], env: dict[str, str]):
    return run([_server(), "--check-config", *args], env={"PATH": os.environ.get("PATH", "/usr/bin"), **env})


CASES = [(overlay, obj["metadata"]["name"]) for overlay in OVERLAYS for obj, _, _ in server_containers(overlay)]


@pytest.mark.parametrize("overlay,workload", CASES)
def test_the_server_accepts_what_the_manifest_gives_it(overlay, workload):
    obj, _, c = next(x for x in server_containers(overlay) if x[0]["metadata"]["name"] == workload)
    env = pod_environment(overlay, c)
    assert "command" not in c, "the image's entrypoint is kvc-server; manifests give it args only"
    args = [expand(a, env) for a in c.get("args", [])]
    result = check_config(args, env)
    assert result.returncode == 0, f"{overlay}/{workload}: {result.stderr}"
    assert result.stdout.startswith("kvc-server: configuration ok\n"), result.stdout
    # What the manifest asked for is what the server would run with.
    for arg in args:
        flag, _, value = arg.partition("=")
        if flag in ("--roles", "--device"):
            assert f"{flag} {value}\n" in result.stdout, (arg, result.stdout)


def test_the_check_refuses_a_misspelt_variable_and_an_unknown_flag():
    # The replay above is only worth something if a mistake fails it.
    obj, _, c = next(server_containers("production"))
    env = pod_environment("production", c)
    misspelt = check_config(c["args"], {**env, "KVC_DRAIN_SECOND": "30"})
    assert misspelt.returncode == 2 and "KVC_DRAIN_SECOND" in misspelt.stderr, misspelt.stderr
    unknown = check_config([*c["args"], "--drain-second=30"], env)
    assert unknown.returncode == 2 and "drain-second" in unknown.stderr, unknown.stderr
