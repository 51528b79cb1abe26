"""Fixtures shared by the pipeline tests."""

import fsspec
import pytest


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setitem(
            fsspec.config.conf, "s3", {"client_kwargs": {"endpoint_url": f"http://{host}:{port}"}, "skip_instance_cache": True}
        )
        fs = fsspec.filesystem("s3")
        if not fs.exists("winnow-readers"):  # moto keeps buckets across servers in one process
            fs.mkdir("winnow-readers")
        yield fs
    finally:
        server.stop()
