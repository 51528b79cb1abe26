"""Apertium kept running in null-flush mode: formatters equal Apertium's, output independent of history."""

import random
import shutil
import subprocess

import pytest

from winnow.filters import augment_apertium
from winnow.filters.augment_apertium import (
    ApertiumChain,
    ApertiumRoundTrip,
    acquire,
    chains_started,
    close_idle,
    deformat,
    reformat,
    release,
)

needs_apertium = pytest.mark.skipif(shutil.which("apertium") is None,
                                    reason="apertium missing: make install (as root) installs it")

# Sentences where a module could carry state from one text to the next: a pronoun after its
# antecedent (apertium-anaphora in the Catalan pair), agreement across a sentence end, lists,
# unknown words and placeholders, Apertium's special characters, blank lines, tildes.
TEXTS = [
    "The dog found the bone in the garden.",
    "It was happy.",
    "The new servers were installed yesterday. They work well.",
    "She gave them to him because he asked for the keys.",
    "ZZT0ZZ stores the state\nof ZZT1ZZ on two lines",
    "Use ZZT0ZZ to deploy it, then check the logs.",
    "Prices rose by 3.5% in [brackets] with $dollars, a\\backslash, <tags> and @handles.",
    "First paragraph.\n\nSecond  paragraph with   spaces ~ and a tilde.",
    "x",
    "The function returns a list of integers when the input is valid.",
]


def _apertium(cmd: str, text: str) -> str:
    return subprocess.run(["bash", "-c", cmd], input=text, capture_output=True, text=True, check=True).stdout.strip()


@needs_apertium
def test_deformat_is_apertium_destxt_on_random_texts():
    rng = random.Random(7)
    alphabet = ["a", "b", "é", ".", " ", " ", "\n", "\n", "\r", "\t", "~", "\\", "[", "]", "$", "^", "@", "<", "/",
                "{", "#", "\x0b", "\x00", "中"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(250)]
    for t in texts:
        want = subprocess.run(["apertium-destxt"], input=t.encode(), capture_output=True, check=True).stdout.decode()
        assert deformat(t) == want, repr(t)


@needs_apertium
def test_reformat_is_apertium_retxt_on_random_streams():
    rng = random.Random(8)
    alphabet = ["a", "é", ".", ".[]", "[", "]", "\\", "\\\\", "\\[", "\\$", " ", "\n", "$", "~", "\x00", "b", "@"]
    streams = []
    while len(streams) < 250:
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if "[@" not in s.replace("\x00", ""):  # [@file] is a blank kept in a file, never in a chain's output
            streams.append(s)
    for s in streams:
        want = subprocess.run(["apertium-retxt"], input=s.encode(), capture_output=True, check=True).stdout.decode()
        assert reformat(s) == want, repr(s)


def _fake_modes(tmp_path):
    modes = tmp_path / "modes"
    modes.mkdir()
    (modes / "zero.mode").write_text("sed -u s/o/0/g\n")  # apertium-wblank-mode -z makes it `sed -z -u ...`
    (modes / "stall.mode").write_text("tail -f /dev/null\n")
    (modes / "bad.mode").write_text("sleep 30\n")  # `sleep -z 30` fails at once
    (modes / "crash.mode").write_text("sed -u -e /crash/Q1\n")  # dies on a unit with "crash"
    return str(tmp_path)


@needs_apertium
def test_chain_frames_units_by_nul_and_keeps_running(tmp_path):
    chain = ApertiumChain("zero", datadir=_fake_modes(tmp_path))
    units = ["foo", "", "two\nlines oo", "x" * 100_000]
    assert chain.run(units) == ["f00", "", "tw0\nlines 00", "x" * 100_000]
    assert chain.run(["boo"]) == ["b00"] and chain.starts == 1 and chain.units == 5
    chain.close()
    assert chain.run(["o"]) == ["0"] and chain.starts == 2
    chain.close()


@needs_apertium
def test_a_chain_that_dies_or_stalls_raises_and_the_next_call_restarts(tmp_path, monkeypatch):
    datadir = _fake_modes(tmp_path)
    with pytest.raises(RuntimeError, match="apertium bad .*exited"):
        ApertiumChain("bad", datadir=datadir).run(["a"])
    monkeypatch.setattr(augment_apertium, "STALL_S", 0.5)
    stall = ApertiumChain("stall", datadir=datadir)
    with pytest.raises(RuntimeError, match="apertium stall .*produced nothing"):
        stall.run(["a"])
    assert stall._proc is None  # stopped
    with pytest.raises(RuntimeError, match="not found"):
        ApertiumChain("nope", datadir=datadir).run(["a"])
    rt = ApertiumRoundTrip(ApertiumChain("bad", datadir=datadir), ApertiumChain("zero", datadir=datadir))
    with pytest.raises(RuntimeError, match="apertium bad"):
        rt.run(["a", "b"])
    assert rt.backward.run(["oo"]) == ["00"]  # the second chain works again


@needs_apertium
def test_a_chain_that_dies_mid_batch_raises_and_translates_the_same_after(tmp_path):
    chain = ApertiumChain("crash", datadir=_fake_modes(tmp_path))
    assert chain.run(["a", "b"]) == ["a", "b"]
    with pytest.raises(RuntimeError, match="apertium crash .*exited with 1"):
        chain.run(["a", "crash", "b"])
    assert chain.run(["b", "a"]) == ["b", "a"] and chain.starts == 2  # a new chain, the same output
    chain.close()


@needs_apertium
def test_idle_chains_are_shared_and_concurrent_callers_get_their_own(tmp_path):
    datadir = _fake_modes(tmp_path)
    a = acquire("zero", datadir)
    b = acquire("zero", datadir)  # a is in use: another chain
    assert a is not b and a.run(["o"]) == b.run(["o"]) == ["0"]
    release(a)
    release(b)
    c = acquire("zero", datadir)
    assert c in (a, b) and c.starts == 1  # an idle one, still running
    release(c)
    assert close_idle(["zero"]) == 2 and a._proc is None and b._proc is None
    d = acquire("zero", datadir)
    assert d is not a and d is not b
    d.close()


@needs_apertium
@pytest.mark.parametrize("pivot", ["spa", "cat", "epo"])
def test_output_does_not_depend_on_history_batching_or_order(pivot):
    from winnow.filters.augment_translate import apertium_backtranslator

    bt = apertium_backtranslator(pivot)
    modes = (bt.forward.mode, bt.backward.mode)
    bt.close()
    before = [chains_started(m) for m in modes]
    whole = bt.backtranslate(TEXTS)
    assert bt.backtranslate(TEXTS[::-1]) == whole[::-1]
    assert bt.backtranslate(TEXTS[5:]) + bt.backtranslate(TEXTS[:5]) == whole[5:] + whole[:5]
    assert [bt.backtranslate([t])[0] for t in TEXTS[:4]] == whole[:4]
    assert apertium_backtranslator(pivot).backtranslate(TEXTS[2:6]) == whole[2:6]  # another caller, the same chains
    assert [chains_started(m) for m in modes] == [b + 1 for b in before]  # all of it through one kept chain each
    one_way = bt.forward.translate(TEXTS)
    assert bt.backward.translate(one_way) == whole  # the round trip = the two directions in turn
    bt.close()  # fresh chains: the same output
    assert bt.backtranslate(TEXTS[3:7]) == whole[3:7]
    assert [chains_started(m) for m in modes] == [b + 2 for b in before]
    bt.close()
    assert all("ZZT0ZZ" in b for b in whole[4:6]) and "ZZT1ZZ" in whole[4]


@needs_apertium
@pytest.mark.slow
@pytest.mark.parametrize("pivot", ["spa", "cat", "epo"])
def test_kept_chains_equal_apertium_u_on_each_text_alone(pivot):
    from winnow.filters.augment_translate import APERTIUM_PIVOTS, apertium_backtranslator

    fwd, bwd, _ = APERTIUM_PIVOTS[pivot]
    bt = apertium_backtranslator(pivot)
    assert bt.forward.translate(TEXTS) == [_apertium(f"apertium -u {fwd}", t) for t in TEXTS]
    assert bt.backtranslate(TEXTS) == [_apertium(f"apertium -u {fwd} | apertium -u {bwd}", t) for t in TEXTS]
    bt.close()


@needs_apertium
def test_installed_modes_are_what_apertium_lists():
    from winnow.filters.augment_translate import apertium_modes

    listed = subprocess.run(["apertium", "-l"], capture_output=True, text=True, check=True).stdout.split()
    assert apertium_modes() == frozenset(listed) and {"eng-spa", "spa-eng"} <= apertium_modes()
