"""Fixtures for the loader tests: token shards written with pyarrow, a moto S3 server on
loopback, and fault-injecting proxies in front of it."""

from __future__ import annotations

import os
import uuid

import pytest

from winnow.cache.synth import write_token_shards

from .cache_faultproxy import FaultProxy

# moto and s3fs read these when a client is made (in the fixtures), not at import
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)

BUCKET = "winnow-test"


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    import boto3

    s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    yield (host, port)
    server.stop()


def s3_options(endpoint: str, read_timeout: float = 1.0) -> dict:
    """s3fs options with botocore's and s3fs's own retries off, so the loader's retries do the work."""
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}, "read_timeout": read_timeout,
                          "connect_timeout": 1.0},
    }


@pytest.fixture(scope="session")
def upload(moto_server, tmp_path_factory):
    """``upload(**write_token_shards kwargs) -> s3 url`` of a fresh dataset in the moto bucket."""
    import s3fs

    host, port = moto_server
    fs = s3fs.S3FileSystem(**s3_options(f"http://{host}:{port}"))

    def _upload(**kwargs) -> str:
        name = uuid.uuid4().hex[:8]
        local = tmp_path_factory.mktemp("ds") / name
        write_token_shards(str(local), **kwargs)
        for root, _, files in os.walk(local):
            for f in files:
                p = os.path.join(root, f)
                fs.put_file(p, f"{BUCKET}/{name}/{os.path.relpath(p, local)}")
        return f"s3://{BUCKET}/{name}"

    return _upload


@pytest.fixture
def proxy(moto_server):
    """``proxy(**FaultProxy kwargs) -> FaultProxy`` started on loopback; stopped after the test."""
    started: list[FaultProxy] = []

    def _proxy(**kwargs) -> FaultProxy:
        p = FaultProxy(moto_server, **kwargs).start()
        started.append(p)
        return p

    yield _proxy
    for p in started:
        p.stop()


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    """Local shards of equal-length token rows (2400 samples, 8 shards, several batches each)."""
    root = tmp_path_factory.mktemp("fixed")
    write_token_shards(str(root), num_samples=2400, rows_per_shard=300, lengths=(32, 32), rows_per_batch=128)
    return str(root)


@pytest.fixture(scope="module")
def ragged_zstd(tmp_path_factory):
    """Local zstd-compressed shards of ragged token rows (1500 samples)."""
    root = tmp_path_factory.mktemp("ragged")
    write_token_shards(str(root), num_samples=1500, rows_per_shard=250, lengths=(3, 60), rows_per_batch=64,
                       compression="zstd")
    return str(root)
