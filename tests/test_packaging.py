"""Install metadata that tells the truth: the Python floor, the license, the wheel's contents, the Dockerfile."""
from __future__ import annotations

import configparser
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO_ROOT = Path(__file__).resolve().parents[1]


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    return config


def python_floor() -> tuple[int, int]:
    spec = setup_cfg()["options"]["python_requires"].strip()
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)", spec)
    assert match, f"python_requires should be a plain floor, got {spec!r}"
    return int(match.group(1)), int(match.group(2))


def runtime_requirements() -> list[Requirement]:
    lines = setup_cfg()["options"]["install_requires"].strip().splitlines()
    requirements = [Requirement(line.strip()) for line in lines if line.strip()]
    return [r for r in requirements if r.marker is None or r.marker.evaluate()]


def test_the_python_floor_is_one_every_installed_dependency_supports():
    floor = "{}.{}".format(*python_floor())
    assert sys.version_info[:2] >= python_floor()
    too_new = {}
    for requirement in runtime_requirements():
        requires_python = metadata.distribution(requirement.name).metadata.get("Requires-Python")
        if requires_python and not SpecifierSet(requires_python).contains(floor):
            too_new[requirement.name] = requires_python
    assert not too_new, f"python_requires >={floor}, but the installed dependencies need {too_new}"


def test_the_source_needs_no_python_newer_than_the_floor():
    """vermin reads the source for syntax and standard-library names newer than the floor."""
    pytest.importorskip("vermin", reason="vermin comes with the [test] extra")
    target = "{}.{}".format(*python_floor())
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from vermin.main import main; sys.exit(main())", "--no-tips", "--violations",
         f"--target={target}-", "--eval-annotations", "--backport", "typing", "twingan", "hubconf.py"],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_installed_torch_meets_the_stated_floor():
    torch_requirement = next(r for r in runtime_requirements() if r.name == "torch")
    assert metadata.version("torch").split("+")[0] in torch_requirement.specifier


def test_license_file_matches_the_metadata():
    assert setup_cfg()["metadata"]["license"].strip() == "MIT"
    assert (REPO_ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_wheel_carries_the_configs_and_the_web_examples(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO_ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("twingan-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twingan/conf/config.yaml" in names and "twingan/conf/experiment/demo.yaml" in names
    assert "twingan/web/examples/astronaut.jpg" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") or name.endswith(".dist-info/LICENSE") for name in names)


def test_the_dockerfile_uses_the_floor_and_runs_the_demo():
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:{}\.{}-slim$".format(*python_floor()), text, re.MULTILINE)
    assert re.search(r'^CMD \["twingan", "demo"', text, re.MULTILINE)
