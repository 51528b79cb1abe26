"""A recording that contains a short clip is not its duplicate; true copies still match.

Generated audio: "syllables" of 250 ms (a random tone under a smooth envelope, with a little
noise), so different seeds are different content and a shared prefix is shared content.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from winnow.filters.audio_fingerprint import (
    RATE,
    AudioDedupConfig,
    ClipPrint,
    clip_distance,
    clip_print,
    fingerprint,
    fingerprint_distance,
    fingerprint_tokens,
    minhash_band_keys,
)

sf = pytest.importorskip("soundfile")


def syllables(seconds: float, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    n = RATE // 4
    t = np.arange(n) / RATE
    env = np.sin(np.pi * t / t[-1]) ** 2
    parts = [0.3 * np.sin(2 * np.pi * r.uniform(200, 3000) * t + r.uniform(0, 6)) * env + 0.02 * r.normal(size=n)
             for _ in range(int(seconds * 4))]
    return np.concatenate(parts).astype("float32")


def flac_round_trip(x: np.ndarray, gain: float = 1.0) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, np.clip(x * gain, -1, 1), RATE, format="FLAC")
    return sf.read(io.BytesIO(buf.getvalue()), dtype="float32")[0]


CFG = AudioDedupConfig()


def dup(x: np.ndarray, y: np.ndarray, cfg: AudioDedupConfig = CFG) -> float:
    return clip_distance(clip_print(x, cfg.max_seconds)[0], clip_print(y, cfg.max_seconds)[0], cfg.min_overlap)


@pytest.fixture(scope="module")
def jingle_set():
    jingle = syllables(5, 1)
    return {
        "jingle": jingle,
        "episode1": np.concatenate([jingle, syllables(55, 2)]),
        "episode2": np.concatenate([jingle, syllables(55, 3)]),
        "other": syllables(60, 4),
    }


def test_a_jingle_is_found_inside_an_episode_but_is_not_its_duplicate(jingle_set):
    j, e1, e2 = jingle_set["jingle"], jingle_set["episode1"], jingle_set["episode2"]
    fj, fe1 = fingerprint(j)[0], fingerprint(e1)[0]
    # the jingle really is inside the episode: counted against the shorter clip it matches ...
    assert fingerprint_distance(fj, fe1, min_overlap=0.05) < 0.1
    # ... but it covers under a tenth of the episode, so it is no duplicate of it
    assert fingerprint_distance(fj, fe1, CFG.min_overlap) == 0.5
    assert dup(j, e1) == dup(j, e2) == 0.5
    assert dup(e1, e2) > CFG.max_ber + 0.05  # 5 s shared of 60 s: different recordings
    for a in jingle_set:
        for b in jingle_set:
            if a != b:
                assert dup(jingle_set[a], jingle_set[b]) > CFG.max_ber, (a, b)


def test_copies_of_an_episode_still_match(jingle_set):
    e1 = jingle_set["episode1"]
    cut = int(0.3 * RATE)
    for name, copy in {
        "flac, quieter": flac_round_trip(e1, 0.5),
        "trimmed both ends": flac_round_trip(e1[cut:-cut]),
        "trimmed 5 s": e1[5 * RATE:],
    }.items():
        assert dup(e1, copy) <= CFG.max_ber / 2, name


def test_a_long_recording_is_not_a_duplicate_of_a_short_clip_it_repeats():
    short = syllables(2, 7)
    long = np.tile(short, 200)  # 400 s: the short clip over and over
    assert dup(short, long) == 0.5
    assert dup(long, short) == 0.5
    p, _ = clip_print(long, CFG.max_seconds)
    assert p.seconds == pytest.approx(400.0) and p.tail is not None
    assert len(p.head) == len(p.tail) == len(fingerprint(long[: 60 * RATE])[0])
    assert dup(long, flac_round_trip(long, 0.7)) <= CFG.max_ber / 2  # its own copy still matches


def test_long_recordings_sharing_their_first_minute_are_not_duplicates():
    intro = syllables(70, 11)  # longer than the fingerprinted head
    a = np.concatenate([intro, syllables(100, 12)])
    b = np.concatenate([intro, syllables(100, 13)])
    pa_, pb = clip_print(a)[0], clip_print(b)[0]
    assert fingerprint_distance(pa_.head, pb.head, CFG.min_overlap) < 0.05  # the heads are the same
    assert clip_distance(pa_, pb, CFG.min_overlap) > CFG.max_ber + 0.05  # the tails are not
    cut = int(0.4 * RATE)
    assert dup(a, flac_round_trip(a[cut:-cut], 0.6)) <= CFG.max_ber / 2


def test_durations_must_be_comparable():
    x = syllables(20, 21)
    assert dup(x, x[: 11 * RATE]) <= 0.05  # 11 s of 20: over min_overlap, a trimmed copy
    assert dup(x, x[: 9 * RATE]) == 0.5  # 9 s of 20: under it
    strict = AudioDedupConfig(min_overlap=0.8)
    assert dup(x, x[: 11 * RATE], strict) == 0.5
    assert dup(x, x[: 17 * RATE], strict) <= 0.05


def test_clip_print_round_trips_and_tokens_cover_head_and_tail():
    x = syllables(80, 31)
    p, loud = clip_print(x, 60.0)
    q = ClipPrint.from_bytes(p.to_bytes())
    assert q.seconds == p.seconds and np.array_equal(q.head, p.head) and np.array_equal(q.tail, p.tail)
    short, _ = clip_print(x[: 10 * RATE], 60.0)
    r = ClipPrint.from_bytes(short.to_bytes())
    assert r.tail is None and np.array_equal(r.head, short.head)
    assert len(loud) > len(p.head)  # the tail's audible frames are tokens too
    keys = minhash_band_keys(fingerprint_tokens(loud, np.ones(loud.shape, bool), CFG.token_bits),
                             CFG.bands, CFG.rows, CFG.seed)
    assert len(keys) == CFG.bands


def test_config_cluster_choices():
    from winnow.errors import ConfigError

    assert AudioDedupConfig().cluster == "representative"
    assert AudioDedupConfig(cluster="components").cluster == "components"
    with pytest.raises(ConfigError):
        AudioDedupConfig(cluster="chains")  # type: ignore[arg-type]
