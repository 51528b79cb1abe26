"""Cold downloads from S3 (moto on loopback): streamed chunk bodies, resume mid-body, local write
errors, one filesystem object per process."""

from __future__ import annotations

import json
import os
import threading

import pytest
import xxhash

from winnow.cache import remote as remote_mod
from winnow.cache.remote import Remote, RetryPolicy
from winnow.errors import FetchError

from .conftest import s3_options

FAST_RETRY = RetryPolicy(attempts=12, base_delay=0.01, max_delay=0.1)


def _shards(url: str, opts: dict) -> tuple[Remote, list]:
    r = Remote(url, opts, FAST_RETRY)
    return r, list(r.read_manifest().shards)


def _download(r: Remote, info, path) -> remote_mod.FetchStats:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, info.bytes)
        return r.download(info, fd)
    finally:
        os.close(fd)


def test_s3_bodies_are_streamed_in_small_pieces(upload, moto_server, tmp_path, monkeypatch):
    url = upload(num_samples=512, rows_per_shard=256, lengths=(512, 512))  # 2 shards of ~0.5 MB
    host, port = moto_server
    r, infos = _shards(url, s3_options(f"http://{host}:{port}"))
    r.chunk_bytes = 1 << 30  # one GET per shard
    sizes = []
    orig = remote_mod._pwrite
    monkeypatch.setattr(remote_mod, "_pwrite", lambda fd, data, off: (sizes.append(len(data)), orig(fd, data, off)))
    for i, info in enumerate(infos):
        stats = _download(r, info, tmp_path / f"s{i}")
        assert stats.retries == 0
        with open(tmp_path / f"s{i}", "rb") as f:
            assert xxhash.xxh3_128_hexdigest(f.read()) == info.xxh3_128
    assert sum(sizes) == sum(i.bytes for i in infos)
    assert max(sizes) <= remote_mod._PIECE  # never a chunk-sized buffer
    assert len(sizes) > len(infos)


def test_a_body_cut_midway_resumes_from_the_last_byte_written(upload, proxy, tmp_path, monkeypatch):
    url = upload(num_samples=512, rows_per_shard=512, lengths=(256, 256))  # 1 shard of ~0.5 MB
    p = proxy(rate=0.5, seed=3, faults=("truncate",), path_filter="/shards/")
    r, infos = _shards(url, s3_options(p.url, read_timeout=5.0))
    r.chunk_bytes = 1 << 30
    starts = []
    orig = remote_mod._s3_stream

    async def spy(fs, path, start, end, fd, h, pos):
        starts.append(start)
        return await orig(fs, path, start, end, fd, h, pos)

    monkeypatch.setattr(remote_mod, "_s3_stream", spy)
    stats = _download(r, infos[0], tmp_path / "s0")
    assert p.counts["truncate"] > 0 and stats.retries > 0 and stats.checksum_failures == 0
    assert any(0 < s < infos[0].bytes for s in starts), starts  # resumed mid-body, not from 0
    with open(tmp_path / "s0", "rb") as f:
        assert xxhash.xxh3_128_hexdigest(f.read()) == infos[0].xxh3_128


def test_a_local_write_error_is_raised_at_once_not_retried(upload, moto_server, tmp_path):
    url = upload(num_samples=64, rows_per_shard=64, lengths=(64, 64))
    host, port = moto_server
    r, infos = _shards(url, s3_options(f"http://{host}:{port}"))
    calls = []
    orig = r._retrying

    def counting(what, fn, stats=None):
        def once():
            calls.append(1)
            return fn()
        return orig(what, once, stats)

    r._retrying = counting  # type: ignore[method-assign]
    open(tmp_path / "ro", "wb").close()
    fd = os.open(tmp_path / "ro", os.O_RDONLY)  # pwrite fails with EBADF
    try:
        with pytest.raises(OSError) as ei:
            r.download(infos[0], fd)
    finally:
        os.close(fd)
    assert not isinstance(ei.value, FetchError)
    assert len(calls) == 1


def test_one_filesystem_per_process_even_when_threads_race(upload, moto_server):
    url = upload(num_samples=64, rows_per_shard=64, lengths=(64, 64))
    host, port = moto_server
    r = Remote(url, s3_options(f"http://{host}:{port}"))
    parent = r.fs
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # a new process (as a DataLoader worker): 8 threads ask at once
        try:
            got, gate = [], threading.Barrier(8)

            def ask() -> None:
                gate.wait()
                got.append(id(r.fs))

            ts = [threading.Thread(target=ask) for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            os.write(wfd, json.dumps({"ids": sorted(set(got)), "parent": id(parent),
                                      "n": len(r.read_manifest().shards)}).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    os.waitpid(pid, 0)
    out = json.loads(os.read(rfd, 10000))
    os.close(rfd)
    assert len(out["ids"]) == 1 and out["ids"][0] != out["parent"] and out["n"] == 1
    assert r.fs is parent  # the parent's own object is untouched


def test_a_missing_object_still_fails_fast(upload, moto_server, tmp_path):
    url = upload(num_samples=64, rows_per_shard=64, lengths=(64, 64))
    host, port = moto_server
    r, infos = _shards(url, s3_options(f"http://{host}:{port}"))
    import s3fs

    s3fs.S3FileSystem(**s3_options(f"http://{host}:{port}")).rm(f"{url[5:]}/{infos[0].path}")
    with pytest.raises(FetchError, match="FileNotFoundError"):
        _download(r, infos[0], tmp_path / "s0")
