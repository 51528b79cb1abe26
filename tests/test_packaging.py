"""Packaging facts a fresh machine depends on: pins, the Dockerfile, CI and README commands."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_beam_pin_matches_the_container_base_image():
    deps = PYPROJECT["project"]["dependencies"]
    beam = next(d for d in deps if d.startswith("apache-beam"))
    version = beam.split("==")[1]
    base = re.search(r"^FROM apache/beam_python(\d+\.\d+)_sdk:(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert base, "Dockerfile must start from an apache/beam_pythonX.Y_sdk image"
    assert base.group(2) == version


def test_container_copies_every_package_folder():
    docker = (ROOT / "Dockerfile").read_text()
    for folder in set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()):
        assert f"COPY {folder}/ {folder}/" in docker, folder


def test_torch_is_pinned_to_the_cpu_wheel_for_dev_and_ci():
    pins = (ROOT / "constraints.txt").read_text().split()
    assert "torch==2.13.0" in pins
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()


def test_pyarrow_stays_inside_beams_cap():
    deps = PYPROJECT["project"]["dependencies"]
    assert any(d.startswith("pyarrow") and "<26" in d for d in deps)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
