"""The same input gives the same shards on every runner setup; the Dataflow graph translates offline."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from winnow.pipeline.configure import load_config
from winnow.demo.corpus import build_demo_corpus
from winnow.pipeline.runner import run

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_demo_corpus(str(tmp_path_factory.mktemp("c") / "corpus"), scale=0.15)


@pytest.fixture(scope="module")
def worker_pool():
    """A Beam EXTERNAL worker pool on loopback, as a Spark/Flink/Kubernetes cluster would run."""
    port = free_port()
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # workers start `python`
    proc = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("the Beam worker pool exited at start")
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the Beam worker pool did not listen within 60 s")
    yield f"localhost:{port}"
    proc.kill()
    proc.wait(timeout=10)


def manifest_files(out):
    with open(os.path.join(out, "index.json")) as fh:
        m = json.load(fh)
    return {k: [(s["path"], s["rows"], s["xxh3_128"]) for s in m[k]] for k in ("shards", "rejects", "dead_letter")}, m["counts"]


@pytest.mark.timeout(900)
def test_identical_shards_across_runners(corpus, worker_pool, tmp_path):
    overrides = ["sink.shard_bytes=300KB", "sink.batch_bytes=64KB"]
    setups = {
        "fnapi": dict(workers=1, beam_args=[]),
        "multiprocess2": dict(workers=2, beam_args=[]),
        "portable": dict(workers=1, beam_args=[
            "--runner=PortableRunner", "--job_endpoint=embed",
            "--environment_type=EXTERNAL", f"--environment_config={worker_pool}",
        ]),
    }
    results = {}
    for name, kw in setups.items():
        out = str(tmp_path / name)
        res = run(load_config(input=list(corpus.inputs), output=out, overrides=overrides), **kw)
        assert res.stats is not None and res.stats["balanced"], name
        funnel = {s["name"]: s["rejected"] for s in res.stats["stages"]}
        near = (funnel["minhash_dedup"].get("minhash_dedup_near_duplicate", 0),
                funnel["image_dedup"].get("image_dedup_near_duplicate", 0))
        print(f"\n{name}: near-duplicates removed (text, image) = {near}, cc rounds "
              f"{res.stats['stage_stats']['minhash_dedup']['cc_rounds']}")
        assert min(near) > 0, name  # the same kept set below includes the clustering's choices
        results[name] = manifest_files(out)
    base_files, base_counts = results["fnapi"]
    assert len(base_files["shards"]) > 1
    for name, (files, counts) in results.items():
        assert counts == base_counts, name
        assert files == base_files, f"{name} wrote different shards than the in-process runner"


def test_dataflow_job_graph_translates_offline(corpus, tmp_path):
    pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")
    try:
        import google.cloud.dataflow_v1beta3  # noqa: F401
    except ImportError:
        pytest.skip("apache-beam[gcp] is not installed")
    cfg = load_config(input=list(corpus.inputs), output="gs://winnow-example/out")
    res = run(cfg, beam_args=[
        "--runner=DataflowRunner", "--dry_run=True", "--no_auth",
        "--project=winnow-example", "--region=us-central1", "--temp_location=gs://winnow-example/tmp",
        "--sdk_container_image=us-docker.pkg.dev/winnow-example/winnow/winnow:0.1.0", "--sdk_location=container",
    ])
    assert res.state == "DRY_RUN"
    names = [t.unique_name for t in res.job.proto_pipeline.components.transforms.values()]
    for step in ("Read", "Stage[normalize]", "Stage[exact_dedup]", "Shards", "Rejects", "DeadLetters", "Finalize"):
        assert any(n == step or n.startswith(step + "/") for n in names), step
    envs = res.job.proto_pipeline.components.environments.values()
    assert any(b"winnow:0.1.0" in e.payload for e in envs)
    assert not os.path.exists(tmp_path / "gs:")  # nothing was written locally
