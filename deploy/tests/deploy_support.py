"""What the deploy tests share: where the tools and files are, and the rendered manifests.

The tools are the real ones that scripts/setup.sh installs: kubectl (kustomize), kubernetes-validate,
yamllint and hadolint in the venv (KVC_TOOLS_BIN, set by deploy/CMakeLists.txt), promtool and prometheus
from Debian on the PATH.
"""
from __future__ import annotations

import functools
import os
import pathlib
import shutil
import subprocess

import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent.parent
REPO = DEPLOY.parent
OVERLAYS = sorted(p.name for p in (DEPLOY / "k8s" / "overlays").iterdir() if p.is_dir())

# Secrets the production overlay names but does not contain: the operator makes them (docs/deploy.md).
EXTERNAL_SECRETS = {"kvc-store", "kvc-auth", "kvc-tls"}


def tool(name: str) -> str:
    """The path of a tool: the venv's bin first (the pinned PyPI tools), then the PATH (Debian's)."""
    venv_bin = os.environ.get("KVC_TOOLS_BIN", str(REPO / ".venv" / "bin"))
    candidate = pathlib.Path(venv_bin) / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found in {venv_bin} or on the PATH: run scripts/setup.sh")
    return found


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Runs a tool, capturing its output as text; the caller checks the return code."""
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)


@functools.lru_cache(maxsize=None)
def rendered(overlay: str) -> str:
    """`kubectl kustomize` of one overlay: the YAML that `kubectl apply -k` would send."""
    result = run([tool("kubectl"), "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)])
    assert result.returncode == 0, f"{overlay} does not render:\n{result.stderr}"
    return result.stdout


def objects(overlay: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(rendered(overlay)) if d]


def pod_specs(overlay: str):
    """(object, pod spec) for every workload in the overlay."""
    for obj in objects(overlay):
        spec = obj.get("spec", {})
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield obj, spec["template"]["spec"]


def server_containers(overlay: str):
    """(workload, pod spec, container) for every container that runs kvc-server."""
    for obj, pod in pod_specs(overlay):
        for c in pod["containers"]:
            if c["name"] == "kvc-server":
                yield obj, pod, c
