"""Audio fingerprints from the log-mel spectrogram, for near-duplicate audio.

A clip (mono, 16 kHz) becomes a sequence of 32-bit sub-fingerprints, one per hop: the signs of
the differences between neighbouring mel bands' log energies, differenced again over time (the
Haitsma-Kalker construction, on ``bands + 1`` mel bands). Re-encoding (MP3, Vorbis, FLAC),
level changes and resampling flip few bits; trimming shifts the sequence.

* **Candidates (LSH):** each clip's set of ``token_bits``-bit tokens (the high bits of every
  sub-fingerprint of an audible frame) is MinHashed with ``bands x rows`` seeded hash
  functions; clips sharing a band key are candidates. Tokens ignore time, so a trimmed copy
  shares most of its tokens with the original.
* **Verification:** :func:`fingerprint_distance` slides one sequence along the other (all
  lags at once, by FFT cross-correlation of the ``±1`` bit planes) and takes the smallest bit
  error rate over lags where the two overlap for at least ``min_overlap`` of the *longer*
  sequence. Copies sit far below 0.35; unrelated audio near 0.5.
* **Whole clips:** :func:`clip_print` keeps a clip's duration and the fingerprints of its first
  ``max_seconds`` and, when it is longer, of its last ``max_seconds``; :func:`clip_distance`
  calls two clips duplicates only when their durations are comparable (the shorter at least
  ``min_overlap`` of the longer) and both their heads and (where either has one) their tails
  match. A recording that merely *contains* a short clip (a jingle, an intro, a 2 s sample of a
  400 s file) is therefore not its duplicate, and two long recordings that share only their
  first minute are not duplicates either.

numpy only (and the ``audio`` stage's decoder). No Beam.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from winnow.errors import ConfigError

__all__ = [
    "AudioDedupConfig",
    "fingerprint",
    "fingerprint_tokens",
    "minhash_band_keys",
    "fingerprint_distance",
    "ClipPrint",
    "clip_print",
    "clip_distance",
    "log_mel",
]

RATE = 16000
N_FFT = 2048  # 128 ms windows
HOP = 256  # 16 ms hops
N_BANDS = 33  # 32 bits per sub-fingerprint
F_LO, F_HI = 150.0, 4000.0


@dataclass(frozen=True)
class AudioDedupConfig:
    """Options of the ``audio_dedup`` stage.

    Attributes:
        max_ber: the largest bit error rate (at the best lag) for two clips to be duplicates.
        min_overlap: two clips are compared only when the shorter lasts at least this share of
            the longer, and the best lag must overlap at least this share of the longer of the
            two fingerprints compared (a short clip inside a long recording is not a duplicate).
        max_seconds: fingerprint at most this many seconds from the start of each clip, and as
            many from its end when it is longer (both ends must match).
        token_bits: bits of each sub-fingerprint used as a MinHash token (high bits first).
        bands, rows: MinHash LSH: ``bands`` keys of ``rows`` minima each.
        seed: seeds the MinHash functions.
        bucket_roots: each member of a bucket is a candidate with the bucket's this many
            smallest records (a true pair still meets when an unrelated clip shares its band).
        bucket_partitions: shuffle partitions of the fingerprints sent to verification.
        keep, keep_field, max_rounds, on_not_converged, examples: as for ``minhash_dedup``.
        cluster: ``representative`` (default): each clip joins the most similar of its matched
            neighbours that is a representative (the greedy independent set in keep order), so
            every removed clip matched the clip kept for it and clusters cannot chain through a
            clip similar to two different ones. ``components``: connected components of the
            matches (chains A~B~C form one cluster even where A and C do not match).
        modalities: records of these modalities with audio are compared.
    """

    max_ber: float = 0.3
    min_overlap: float = 0.5
    max_seconds: float = 60.0
    token_bits: int = 12
    bands: int = 24
    rows: int = 1
    seed: int = 1
    bucket_roots: int = 4
    bucket_partitions: int = 16
    keep: Literal["smallest_id", "highest_field"] = "smallest_id"
    keep_field: str = ""
    max_rounds: int = 8
    on_not_converged: Literal["flag", "fail"] = "flag"
    examples: int = 5
    cluster: Literal["components", "representative"] = "representative"
    modalities: tuple[str, ...] = ("audio", "audio_text")

    def __post_init__(self) -> None:
        from winnow.filters.dedup.config import _common

        s = "audio_dedup"
        if not 0.0 < self.max_ber < 0.5:
            raise ConfigError(f"{s}.max_ber", self.max_ber, "a bit error rate in (0, 0.5)")
        if not 0.0 < self.min_overlap <= 1.0:
            raise ConfigError(f"{s}.min_overlap", self.min_overlap, "a share in (0, 1]")
        if not 1.0 <= self.max_seconds <= 3600.0:
            raise ConfigError(f"{s}.max_seconds", self.max_seconds, "seconds from 1 to 3600")
        if not 4 <= self.token_bits <= 32:
            raise ConfigError(f"{s}.token_bits", self.token_bits, "an integer from 4 to 32")
        if not 1 <= self.bands <= 256:
            raise ConfigError(f"{s}.bands", self.bands, "an integer from 1 to 256")
        if not 1 <= self.rows <= 16:
            raise ConfigError(f"{s}.rows", self.rows, "an integer from 1 to 16")
        if not 1 <= self.bucket_roots <= 64:
            raise ConfigError(f"{s}.bucket_roots", self.bucket_roots, "an integer from 1 to 64")
        if not 1 <= self.bucket_partitions <= 4096:
            raise ConfigError(f"{s}.bucket_partitions", self.bucket_partitions, "an integer from 1 to 4096")
        if self.cluster not in ("components", "representative"):
            raise ConfigError(f"{s}.cluster", self.cluster, "components or representative")
        _common(s, self.keep, self.keep_field, self.max_rounds, self.on_not_converged, self.examples)


@lru_cache(maxsize=4)
def _mel_matrix(n_fft: int = N_FFT, n: int = N_BANDS, rate: int = RATE) -> np.ndarray:
    """Triangular mel filters ``[n, n_fft//2+1]`` between F_LO and F_HI."""
    def mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(np.array(F_LO)), mel(np.array(F_HI)), n + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    w = np.zeros((n, freqs.size))
    for i in range(n):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        w[i] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0.0, None)
    return w


def log_mel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log-mel energies [frames, N_BANDS], frame energy [frames])`` of 16 kHz mono samples."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    n = 1 + (x.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(N_FFT)[None, :], axis=1)) ** 2
    mel = spec @ _mel_matrix().T
    energy = mel.sum(axis=1)
    floor = max(float(energy.max()), 1e-12) * 1e-6
    return np.log(mel + floor / N_BANDS), energy


def fingerprint(x: np.ndarray, max_seconds: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """``(sub-fingerprints uint32 [frames-1], audible bool [frames-1])`` of 16 kHz mono samples.

    Audible frames are those within 40 dB of the clip's loudest frame.
    """
    x = np.asarray(x)[: int(max_seconds * RATE)]
    lm, energy = log_mel(x)
    d = lm[:, :-1] - lm[:, 1:]  # band differences [frames, 32]
    bits = (d[1:] - d[:-1]) > 0  # over time [frames-1, 32]
    weights = (1 << np.arange(31, -1, -1, dtype=np.uint64)).astype(np.uint64)
    fp = (bits.astype(np.uint64) @ weights).astype(np.uint32)
    audible = energy[1:] >= max(float(energy.max()), 1e-12) * 1e-4
    return fp, audible


def fingerprint_tokens(fp: np.ndarray, audible: np.ndarray, token_bits: int) -> np.ndarray:
    """The distinct ``token_bits``-bit tokens of the audible frames (uint64, sorted)."""
    return np.unique((fp[audible] >> np.uint32(32 - token_bits)).astype(np.uint64))


@lru_cache(maxsize=8)
def _seeds(n: int, seed: int) -> np.ndarray:
    g = np.random.RandomState(seed)
    return g.randint(0, 1 << 62, size=n, dtype=np.int64).astype(np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64 arithmetic wraps)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def minhash_band_keys(tokens: np.ndarray, bands: int, rows: int, seed: int = 1) -> list[bytes]:
    """``bands`` keys (band index + ``rows`` minima) of a token set; empty when there is no token."""
    if tokens.size == 0:
        return []
    with np.errstate(over="ignore"):
        h = _mix(tokens[None, :].astype(np.uint64) ^ _seeds(bands * rows, seed)[:, None])
    mins = h.min(axis=1).reshape(bands, rows)
    return [j.to_bytes(2, "little") + mins[j].astype("<u8").tobytes() for j in range(bands)]


def _planes(fp: np.ndarray) -> np.ndarray:
    """``±1`` bit planes ``[frames, 32]`` of sub-fingerprints."""
    bits = np.unpackbits(fp.astype(">u4").view(np.uint8).reshape(-1, 4), axis=1)
    return bits.astype(np.float64) * 2.0 - 1.0


def fingerprint_distance(a: np.ndarray, b: np.ndarray, min_overlap: float = 0.5) -> float:
    """The smallest bit error rate between two sub-fingerprint sequences over their lags.

    Lags where the overlap is shorter than ``min_overlap`` of the *longer* sequence (and than
    8 frames) are not considered, so a short sequence found inside a long one is no match;
    0.5 (unrelated) when no lag qualifies.
    """
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return 0.5
    need = max(8, int(np.ceil(min_overlap * max(n, m))))
    if need > min(n, m):
        return 0.5
    size = 1 << int(np.ceil(np.log2(n + m)))
    pa, pb = _planes(a), _planes(b)
    fa = np.fft.rfft(pa, size, axis=0)
    fb = np.fft.rfft(pb, size, axis=0)
    corr = np.fft.irfft((fa * np.conj(fb)).sum(axis=1), size)  # corr[k] = sum_i a[i+k] . b[i]
    lags = np.arange(-(m - 1), n)
    s = corr[lags % size]
    overlap = np.minimum(n, lags + m) - np.maximum(0, lags)
    ok = overlap >= need
    if not ok.any():
        return 0.5
    ber = (32.0 * overlap[ok] - s[ok]) / (64.0 * overlap[ok])
    return float(max(0.0, ber.min()))


@dataclass(frozen=True)
class ClipPrint:
    """What verification knows of a clip: its whole duration and the sub-fingerprints of its
    first ``max_seconds`` (``head``) and, when it is longer, of its last ``max_seconds``
    (``tail``, else None)."""

    seconds: float
    head: np.ndarray
    tail: np.ndarray | None = None

    def to_bytes(self) -> bytes:
        """``<d seconds><I head frames><I tail frames>`` then the frames as little-endian uint32."""
        tail = np.zeros(0, np.uint32) if self.tail is None else self.tail
        header = np.array([self.seconds], "<f8").tobytes() + np.array([len(self.head), len(tail)], "<u4").tobytes()
        return header + self.head.astype("<u4").tobytes() + tail.astype("<u4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> ClipPrint:
        seconds = float(np.frombuffer(data, "<f8", 1)[0])
        n_head, n_tail = (int(v) for v in np.frombuffer(data, "<u4", 2, 8))
        frames = np.frombuffer(data, "<u4", n_head + n_tail, 16)
        return cls(seconds, frames[:n_head], frames[n_head:] if n_tail else None)


def clip_print(x: np.ndarray, max_seconds: float = 60.0) -> tuple[ClipPrint, np.ndarray]:
    """``(ClipPrint, audible sub-fingerprints)`` of 16 kHz mono samples.

    The audible sub-fingerprints (of the head and the tail) are what the MinHash tokens are made
    of (:func:`fingerprint_tokens` of them with an all-true mask).
    """
    x = np.asarray(x)
    window = int(max_seconds * RATE)
    head, audible = fingerprint(x, max_seconds)
    tail = None
    loud = [head[audible]]
    if x.size > window:
        tail, tail_audible = fingerprint(x[-window:], max_seconds)
        loud.append(tail[tail_audible])
    return ClipPrint(x.size / RATE, head, tail), np.concatenate(loud)


def clip_distance(p: ClipPrint, q: ClipPrint, min_overlap: float = 0.5) -> float:
    """The bit error rate of two clips as duplicates; 0.5 (unrelated) when they cannot be.

    Clips whose durations differ by more than ``min_overlap`` allows (the shorter under
    ``min_overlap`` of the longer) are never duplicates: a recording holding a short clip is
    not a copy of it. Otherwise the heads are compared by :func:`fingerprint_distance` and,
    when either clip is longer than the fingerprinted window, the tails too (a clip without a
    tail uses its whole fingerprint); the larger of the two rates counts.
    """
    lo, hi = sorted((p.seconds, q.seconds))
    if lo <= 0.0 or lo < min_overlap * hi:
        return 0.5
    ber = fingerprint_distance(p.head, q.head, min_overlap)
    if p.tail is not None or q.tail is not None:
        tp = p.head if p.tail is None else p.tail
        tq = q.head if q.tail is None else q.tail
        ber = max(ber, fingerprint_distance(tp, tq, min_overlap))
    return ber
