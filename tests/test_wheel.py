"""`pip install winnow` without extras: the wheel installs into a fresh virtualenv without Beam,
and a trainer streams shards through ``winnow.cache`` with it.

Offline where it can be: the wheel's dependencies come from the wheel folders this machine keeps
(pip's ``find-links`` and the local index of its configuration) with ``--no-index``; only where
those lack a package does pip fall back to its configured indexes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from winnow.cache.synth import write_token_shards

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TORCH_PIN = next(line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
                 if line.startswith("torch=="))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# What a trainer runs after `pip install winnow` (and their own torch): no Beam anywhere.
TRAINER = textwrap.dedent("""
    import importlib.util, sys
    import numpy as np
    import winnow, winnow.format, winnow.shardio
    from winnow.cache import INDEX_KEY, StreamingDataLoader, StreamingDataset
    from winnow.cache.synth import expected_tokens, sample_length

    remote, local, n, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    ds = StreamingDataset(remote=remote, local=local, cache_limit="64MB", memory_limit="16MB",
                          columns=["tokens"], shuffle=True, seed=3, batch_size=20, batched=True)
    seen = []
    for batch in StreamingDataLoader(ds, num_workers=0):
        offs = batch.get("tokens_offsets")
        for k, i in enumerate(batch[INDEX_KEY].tolist()):
            got = batch["tokens"][k].numpy() if offs is None else batch["tokens"][offs[k]:offs[k + 1]].numpy()
            assert np.array_equal(got, expected_tokens(i, int(sample_length(i, (lo, hi))))), i
            seen.append(i)
    assert sorted(seen) == list(range(n)), (len(seen), n)
    beam = sorted(m for m in sys.modules if m.split(".")[0] in ("apache_beam", "winnow.pipeline"))
    assert not beam, beam
    print("streamed", len(seen), "samples; apache_beam installed:", importlib.util.find_spec("apache_beam") is not None)
""")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _local_wheel_dirs() -> list[str]:
    """Folders of wheels pip is configured to look in on this machine (find-links, file:// indexes)."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    dirs: list[str] = []
    for line in out.stdout.splitlines() + [f"env.find-links='{os.environ.get('PIP_FIND_LINKS', '')}'"]:
        _, _, value = line.partition("=")
        for item in value.strip().strip("'\"").split():
            path = item.removeprefix("file://")
            if path.endswith("/simple"):
                path = path[: -len("/simple")] + "/files"
            if path and os.path.isdir(path) and path not in dirs:
                dirs.append(path)
    return dirs


def _pip_install(venv_python: Path, *args: str, wheels: Path) -> str:
    base = [str(venv_python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
            "-c", str(ROOT / "constraints.txt")]
    links = [a for d in [str(wheels), *_local_wheel_dirs()] for a in ("--find-links", d)]
    offline = subprocess.run([*base, "--no-index", *links, *args], capture_output=True, text=True)
    if offline.returncode == 0:
        return "offline"
    _run([*base, "--find-links", str(wheels), *args])  # a package the local wheels lack
    return "index"


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    # Build from a copy of what the wheel is made of, so the checkout gets no build/ or egg-info.
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = base / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)])
    wheel = next(dist.glob("winnow-*.whl"))
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    how = _pip_install(py, str(wheel), wheels=dist)
    return py, venv, how


def test_plain_install_has_no_beam_and_no_stage_libraries(fresh_install):
    py, _, how = fresh_install
    print(f"the wheel's dependencies were installed {how}")
    code = ("import importlib.util\n"
            "from winnow.pipeline.console import PIPELINE_MODULES\n"
            "print(' '.join(m for m in PIPELINE_MODULES if importlib.util.find_spec(m)))\n")
    assert _run([str(py), "-c", code], cwd="/").stdout.strip() == ""
    listed = _run([str(py), "-m", "pip", "list", "--format=freeze"]).stdout.lower()
    assert "apache-beam" not in listed and "torch" not in listed
    assert {"pyarrow", "numpy", "fsspec", "xxhash", "winnow"} <= {ln.split("==")[0] for ln in listed.split()}


def test_the_console_script_names_the_pipeline_extra(fresh_install):
    _, venv, _ = fresh_install
    out = subprocess.run([str(venv / "bin" / "winnow"), "run", "--input", "x", "--output", "y"],
                         capture_output=True, text=True, cwd="/")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "missing: apache_beam" in out.stderr and "pip install 'winnow[pipeline]'" in out.stderr


def test_a_trainer_streams_shards_through_the_cache(fresh_install, tmp_path):
    py, _, _ = fresh_install
    # The trainer's own torch, pinned as this project pins it for CI.
    _pip_install(py, TORCH_PIN, wheels=tmp_path)
    n, lengths = 300, (8, 40)  # 15 batches of 20: no padding of the last step
    write_token_shards(str(tmp_path / "remote"), num_samples=n, rows_per_shard=70, lengths=lengths)
    out = _run([str(py), "-c", TRAINER, f"file://{tmp_path / 'remote'}", str(tmp_path / "l2"), str(n),
                *map(str, lengths)], cwd="/", timeout=300)
    assert out.stdout.strip() == f"streamed {n} samples; apache_beam installed: False"
