"""CudaPrefetcher's copies straight from the workers' page-locked segments: the bookkeeping, on CPU.

A stand-in for the CUDA calls (``FakeOps``) defers every "device" copy until the test completes
its event, as a DMA on a busy stream reads host memory some time after it was issued. A host batch
released too early lets its worker overwrite the segment before the copy has read it, and the copy
then differs from the batch the loader produced in-process.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from winnow.cache import INDEX_KEY, CudaPrefetcher, StreamingDataLoader, StreamingDataset
from winnow.cache import loader as loader_mod
from winnow.cache.gpu import cuda_ready
from winnow.cache.synth import expected_tokens, write_token_shards


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("reg")
    write_token_shards(str(root), num_samples=2400, rows_per_shard=600, lengths=(32, 32))
    return str(root)


def make(remote, local, **kw):
    args = dict(remote=remote, local=str(local), cache_limit="64MB", memory_limit="64MB", shuffle=True, seed=5,
                batch_size=48, shuffle_block=600, columns=["tokens"], batched=True, transfer_steps=1)
    args.update(kw)
    return StreamingDataset(**args)


def segment_of(t: torch.Tensor):
    for segs in list(loader_mod._SEGS.values()):
        for _, seg in list(segs.values()):
            if seg.holds(t):
                return seg
    return None


class FakeEvent:
    def __init__(self, jobs, hosts, direct):
        self.jobs, self.hosts, self.direct, self.completed = jobs, hosts, direct, False


class FakeOps:
    """The CUDA calls of CudaPrefetcher on the CPU. ``copy`` allocates the output and reads the
    host memory only when the event is completed (:meth:`complete`): from the segment itself for a
    tensor in a recycled segment (holding the ``_Segment``, which keeps the mapping but not the
    slot busy), from the tensor for a pinned one. ``fail(n)`` makes the n-th registration fail."""

    def __init__(self, fail=lambda n: False):
        self.fail = fail
        self.events: list[FakeEvent] = []
        self.registers: list[int] = []  # ptr of every register call
        self.ok: set[int] = set()  # ptrs registered successfully
        self.undone: list[int] = []
        self.pins = 0

    def thread_start(self):
        pass

    def pin(self, t):
        self.pins += 1
        return t.clone()  # the pin copy: a snapshot in memory of its own

    def register(self, ptr, nbytes):
        n = len(self.registers)
        self.registers.append(ptr)
        if self.fail(n):
            return None
        self.ok.add(ptr)
        return self.undone.append

    def copy(self, batch):
        out, jobs, hosts, direct = {}, [], [], False
        for k, v in batch.items():
            if not isinstance(v, torch.Tensor):
                out[k] = v
                continue
            assert v.is_contiguous()
            dst = out[k] = torch.empty_like(v)
            seg = segment_of(v)
            if seg is not None and seg.ptr in self.ok:
                direct = True
                off = v.data_ptr() - seg.ptr
                jobs.append((dst, seg, off, v.dtype, v.shape))
            else:
                jobs.append((dst, v, None, None, None))
            hosts.append(weakref.ref(v))
        ev = FakeEvent(jobs, hosts, direct)
        self.events.append(ev)
        return out, ev

    def hand_over(self, gpu, ev):
        pass

    def done(self, ev):
        return ev.completed

    def complete(self, ev):
        for dst, src, off, dtype, shape in ev.jobs:
            if off is None:
                dst.copy_(src)
            else:
                nbytes = dst.numel() * dst.element_size()
                dst.copy_(src.tensor[off:off + nbytes].view(dtype).view(shape))
        ev.jobs = []
        ev.completed = True

    def sync(self):
        for ev in self.events:
            if not ev.completed:
                self.complete(ev)


def reference(fixed, tmp_path):
    return [{k: v.clone() for k, v in b.items()} for b in StreamingDataLoader(make(fixed, tmp_path), num_workers=0)]


def assert_same(ref, got):
    assert len(got) == len(ref)
    for s, (a, b) in enumerate(zip(ref, got)):
        assert list(a) == list(b)
        for key in a:
            assert torch.equal(a[key], b[key]), f"step {s}, {key}: the copy read bytes overwritten by a worker"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("lag", [1, 3])
def test_host_batch_is_held_until_its_copy_completes_then_its_slot_is_reused(fixed, tmp_path, lag):
    """Copies complete ``lag`` batches late. Until then the host batch must stay alive (its
    segment's slot busy); at the next ``next`` after completion it must be gone; the segments are
    page-locked once each and reused; every copied batch equals the in-process one."""
    ref = reference(fixed, tmp_path)
    received0 = dict(loader_mod.RECEIVED)
    ops = FakeOps()
    pf = CudaPrefetcher(StreamingDataLoader(make(fixed, tmp_path), num_workers=2, pin_memory=False),
                        device="cpu", depth=2, ops=ops)
    got, completed = [], 0
    for k, gpu in enumerate(pf):
        got.append(gpu)
        events = ops.events
        assert len(events) >= k + 1
        for j, ev in enumerate(events):  # `completed` events were completed before this next()
            alive = [r() is not None for r in ev.hosts]
            if not ev.completed:
                assert all(alive), f"batch {j}: host batch dropped before its copy completed"
            else:
                assert j < completed and not any(alive), f"batch {j}: host batch kept after its copy completed"
        while completed <= k - lag:  # copies of batches consumed `lag` ago finish now
            ops.complete(events[completed])
            completed += 1
    assert_same(ref, got)
    direct = [ev.direct for ev in ops.events]
    assert len(direct) == 50 and sum(direct) >= 40, direct  # almost all straight from the segments
    assert pf.stats["direct"] == sum(direct) and pf.stats["pinned"] == 50 - sum(direct)
    assert pf.stats["fallback"] == 0 and pf.stats["register_failed"] == 0
    assert len(ops.registers) == len(set(ops.registers)) == pf.stats["registered"]  # once per segment
    assert pf.stats["registered"] <= 2 * loader_mod.POOL_SLOTS < sum(direct)  # so segments were reused...
    assert loader_mod.RECEIVED["by_reference"] - received0["by_reference"] >= sum(direct) - pf.stats["registered"]


@pytest.mark.timeout(240)
def test_dropping_host_batches_at_hand_over_is_caught(fixed, tmp_path, monkeypatch):
    """The rule above is what the test checks: a consumer that drops the host batch as soon as the
    compute stream waited (the old code, safe only for torch's pinned allocator) fails it."""
    from winnow.cache import gpu as gpu_mod

    class Early(FakeOps):
        def done(self, ev):
            return True  # "completed" for the bookkeeping, while the copy has not read anything yet

    ops = Early()
    pf = gpu_mod.CudaPrefetcher(StreamingDataLoader(make(fixed, tmp_path), num_workers=2, pin_memory=False),
                                device="cpu", depth=2, ops=ops)
    dropped_early = 0
    for _ in pf:
        dropped_early += sum(1 for ev in ops.events if not ev.completed and any(r() is None for r in ev.hosts))
        for ev in ops.events[:-3]:
            if not ev.completed:
                ops.complete(ev)
    assert dropped_early > 0


@pytest.mark.timeout(240)
def test_a_failed_registration_takes_the_pin_copy_for_that_segment_and_is_not_retried(fixed, tmp_path):
    ref = reference(fixed, tmp_path)
    ops = FakeOps(fail=lambda n: n % 2 == 0)  # every other segment cannot be page-locked
    pf = CudaPrefetcher(StreamingDataLoader(make(fixed, tmp_path), num_workers=2, pin_memory=False),
                        device="cpu", depth=2, ops=ops)
    got = []
    for gpu in pf:
        got.append(gpu)
        for ev in ops.events:
            if not ev.completed:
                ops.complete(ev)
    assert_same(ref, got)
    st = pf.stats
    assert len(ops.registers) == len(set(ops.registers)) == st["registered"] + st["register_failed"]
    assert st["register_failed"] == (len(ops.registers) + 1) // 2 and st["registered"] == len(ops.registers) // 2
    direct = sum(ev.direct for ev in ops.events)
    assert st["direct"] == direct > 0 and st["fallback"] > 0
    assert st["direct"] + st["fallback"] + st["pinned"] == 50
    assert ops.pins == 2 * (st["fallback"] + st["pinned"])  # two tensors a step: tokens and the sample index
    gc.collect()  # the loader's iterator is gone: every registration undone once, no failed one
    assert sorted(ops.undone) == sorted(ops.ok)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", ["in-process", "plain-list", "register-off", pytest.param(
    "pin-thread", marks=pytest.mark.skipif(not cuda_ready(), reason="the DataLoader pins only with an accelerator"))])
def test_batches_not_in_a_recycled_segment_take_the_pin_copy(fixed, tmp_path, case):
    ops = FakeOps()
    if case == "in-process":
        loader = StreamingDataLoader(make(fixed, tmp_path), num_workers=0)
    elif case == "plain-list":
        loader = [{"x": torch.arange(6) + i} for i in range(50)]
    elif case == "pin-thread":  # what the DataLoader's pin thread copied no longer views a segment
        loader = StreamingDataLoader(make(fixed, tmp_path), num_workers=2, pin_memory=True)
    else:
        loader = StreamingDataLoader(make(fixed, tmp_path), num_workers=2, pin_memory=False)
    pf = CudaPrefetcher(loader, device="cpu", register=case != "register-off", ops=ops)
    n = 0
    for _ in pf:
        n += 1
        for ev in ops.events:
            if not ev.completed:
                ops.complete(ev)
    assert n == 50 and not ops.registers and not any(ev.direct for ev in ops.events)
    assert pf.stats == {"direct": 0, "pinned": 50, "fallback": 0, "registered": 0, "register_failed": 0}


def mapping_line(ptr: int) -> str | None:
    """The /proc/self/maps line of the mapping holding ``ptr`` (None: not mapped)."""
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= ptr < hi:
                return line.strip()
    return None


@pytest.mark.timeout(240)
def test_a_registration_is_undone_when_the_last_view_goes_while_still_mapped(fixed, tmp_path):
    """The loader forgets its segments when its iterator goes; a page-locked segment a kept step
    still views stays mapped and registered, and is unregistered (while still mapped) only when
    that step goes; then it is unmapped."""
    undone: list[tuple[int, str | None]] = []

    def undo(ptr):
        undone.append((ptr, mapping_line(ptr)))

    loader = StreamingDataLoader(make(fixed, tmp_path), num_workers=2)
    it = iter(loader)
    for _ in range(5):  # both workers' first segments are mapped by now
        next(it)
    kept = next(it)
    seg = it.segment
    assert seg is not None and seg.holds(kept["tokens"])
    token = seg.key[0]
    ptrs = []
    for _, s in loader_mod._SEGS[token].values():  # "page-lock" every segment mapped so far
        s.registered, s.undo = True, undo
        ptrs.append(s.ptr)
    del s
    assert len(ptrs) >= 2
    kept_ptr, kept_line = seg.ptr, mapping_line(seg.ptr)
    assert kept_line is not None
    del seg
    n = sum(1 for _ in it)
    assert n == 44
    del it
    gc.collect()
    assert token not in loader_mod._SEGS  # forgotten with its iterator
    assert kept_ptr not in [p for p, _ in undone]  # a step still views it
    assert sorted(p for p, _ in undone) == sorted(p for p in ptrs if p != kept_ptr)
    assert all(line is not None for _, line in undone)  # each undone while its segment was still mapped
    assert np.array_equal(kept["tokens"][0].numpy(), expected_tokens(int(kept[INDEX_KEY][0]), 32))
    del kept
    gc.collect()
    assert undone[-1] == (kept_ptr, kept_line)  # undone when the step went, and still mapped then
    assert mapping_line(kept_ptr) != kept_line  # ... and unmapped right after


def test_a_segment_is_not_unregistered_at_interpreter_exit_or_in_a_forked_child(monkeypatch):
    calls = []
    t = torch.zeros(4096, dtype=torch.uint8)
    seg = loader_mod._Segment(t, (0, 0, 1))
    seg.undo = calls.append
    seg.pid = -1  # as in a forked child: the registration belongs to the parent
    del seg
    monkeypatch.setitem(loader_mod._EXIT, "now", True)
    seg = loader_mod._Segment(t, (0, 0, 2))
    seg.undo = calls.append
    del seg
    monkeypatch.setitem(loader_mod._EXIT, "now", False)
    seg = loader_mod._Segment(t, (0, 0, 3))
    seg.undo = calls.append
    del seg
    assert calls == [t.data_ptr()]  # only the last one, in its own process before exit


@pytest.mark.skipif(not cuda_ready(), reason="needs CUDA")
@pytest.mark.timeout(240)
def test_on_cuda_batches_come_straight_from_page_locked_segments(fixed, tmp_path):
    ref = reference(fixed, tmp_path)
    pf = CudaPrefetcher(StreamingDataLoader(make(fixed, tmp_path), num_workers=2, pin_memory=False), depth=2)
    got = [{k: v.cpu() for k, v in b.items()} for b in pf]
    assert_same(ref, got)
    assert pf.stats["direct"] >= 40 and pf.stats["register_failed"] == 0


def test_the_cuda_calls_register_once_and_undo_on_the_registering_device(monkeypatch):
    """``_CudaOps.register`` through a stand-in ``cudart``: success gives an undo that unregisters
    the same pointer on the registering device; a failed call or a ``cudart`` without
    ``cudaHostUnregister`` (nothing could undo it) gives None, after resetting CUDA's last error."""
    import contextlib

    from winnow.cache import gpu as gpu_mod

    calls = []

    class Cudart:
        def __init__(self, rc):
            self.rc = rc

        def cudaHostRegister(self, ptr, nbytes, flags):
            calls.append(("register", ptr, nbytes, flags))
            return self.rc

        def cudaHostUnregister(self, ptr):
            calls.append(("unregister", ptr))
            return 0

    class OldCudart:
        def cudaHostRegister(self, ptr, nbytes, flags):
            calls.append(("register", ptr, nbytes, flags))
            return 0

    @contextlib.contextmanager
    def on_device(index):
        calls.append(("device", index))
        yield

    monkeypatch.setattr(gpu_mod, "_clear_cuda_error", lambda: calls.append(("clear",)))
    monkeypatch.setattr(torch.cuda, "device", on_device)
    ops = object.__new__(gpu_mod._CudaOps)
    ops.device = torch.device("cuda", 3)

    monkeypatch.setattr(torch.cuda, "cudart", lambda: Cudart(0))
    undo = ops.register(4096, 1 << 20)
    assert calls == [("register", 4096, 1 << 20, 0)]
    undo(4096)
    assert calls[1:] == [("device", 3), ("unregister", 4096)]

    calls.clear()
    monkeypatch.setattr(torch.cuda, "cudart", lambda: Cudart(712))  # e.g. cudaErrorHostMemoryAlreadyRegistered
    assert ops.register(4096, 1 << 20) is None and calls == [("register", 4096, 1 << 20, 0), ("clear",)]

    calls.clear()
    monkeypatch.setattr(torch.cuda, "cudart", lambda: OldCudart())
    assert ops.register(4096, 1 << 20) is None and calls == []
