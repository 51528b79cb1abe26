"""Options of the ``minhash_dedup`` and ``image_dedup`` stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from winnow.errors import ConfigError

__all__ = ["MinHashDedupConfig", "ImageDedupConfig", "KeepRule"]

KeepRule = Literal["smallest_id", "highest_field"]
_MODALITIES = ("text", "image", "image_text", "audio", "audio_text")


def _common(stage: str, keep: str, keep_field: str, max_rounds: int, on_not_converged: str, examples: int) -> None:
    if keep not in ("smallest_id", "highest_field"):
        raise ConfigError(f"{stage}.keep", keep, "smallest_id or highest_field")
    if keep == "highest_field" and not keep_field:
        raise ConfigError(f"{stage}.keep_field", keep_field, "a numeric record field such as quality_score",
                          "keep: highest_field keeps the record with the highest value of this field")
    if not 1 <= max_rounds <= 64:
        raise ConfigError(f"{stage}.max_rounds", max_rounds, "an integer from 1 to 64")
    if on_not_converged not in ("flag", "fail"):
        raise ConfigError(f"{stage}.on_not_converged", on_not_converged, "flag or fail")
    if not 0 <= examples <= 50:
        raise ConfigError(f"{stage}.examples", examples, "0..50")


@dataclass(frozen=True)
class MinHashDedupConfig:
    """Options of the ``minhash_dedup`` stage (text near-duplicates).

    Attributes:
        threshold: Jaccard similarity of shingle sets above which two texts are duplicates.
        num_perm: MinHash permutations (signature length).
        ngram: words per shingle.
        bands, rows: LSH banding; 0 and 0 derive them from ``threshold`` by minimising the
            weighted false-positive and false-negative areas (as datasketch does; ``lsh.optimal_bands``).
        fp_weight, fn_weight: the weights of that minimisation. Unset, they depend on
            ``verify``: with verification (which removes the false positives afterwards) 0.01 and
            0.99, leaning hard to recall (18 bands of 7 rows at 0.8 with 128 permutations: a pair
            at 0.8 shares a band with probability 0.986); without it 0.3 and 0.7 (11 x 11).
        seed: seeds the permutations and band hashes.
        modalities: records of these modalities are compared (others pass through kept).
        verify: what a candidate pair (two texts sharing an LSH band) must pass before it links
            them: ``signature`` (default) its estimated Jaccard, the fraction of equal MinHash
            values, must reach ``verify_threshold`` (a compact 16-bit sketch of each signature
            travels, two more shuffles); ``exact`` the exact Jaccard of its shingle sets must
            reach ``threshold`` (the texts travel); ``none`` links every candidate pair (the
            plain LSH: more recall through chains, less precision).
        verify_threshold: the estimated-Jaccard bar of ``verify: signature``; 0 means
            ``threshold``. Lower trades precision for recall.
        exact_margin: ``verify: signature``: a pair whose estimate lies within this of
            ``verify_threshold`` is settled by the exact Jaccard of its texts (the estimate from
            128 values has a standard deviation of about 0.035 near 0.8). Costs one shuffle of
            the compared texts (to pick out those on such pairs; only they go on to the exact
            check). 0 trusts the estimate alone (no text shuffled).
        bucket_roots: with verification, each member of an LSH bucket is a candidate pair with
            each of the bucket's ``bucket_roots`` smallest records (not only the smallest), so a
            smaller unrelated text sharing a band (boilerplate) cannot hide a true pair. Default 1:
            the hard labelled set scores the same through Beam (>= 0.98 precision and recall),
            while 4 roots cost ~30% more CPU of the whole default run on machine text (its
            candidate edges travel as Python objects) and far more memory at 300 MB.
        keep: which record of a cluster is kept: ``smallest_id`` (then source), or
            ``highest_field`` (the highest value of ``keep_field``, ties by id and source).
        keep_field: the numeric record field for ``highest_field``.
        max_rounds: connected-component rounds unrolled in the graph (each is two shuffles,
            skipped once a round changed nothing; ``cluster: representative``: one shuffle
            each, plus one).
        on_not_converged: ``flag`` (stats and report say so; the component's smallest record is
            still kept and every record still ends in one place) or ``fail`` the run.
        cluster: how verified pairs become clusters. ``components`` (default): connected
            components; a chain of edits A~B~C is one cluster even where A and C are not
            similar (on the hard labelled set, whose truth is the same components of exact
            Jaccard, precision and recall 1.000 / 0.992). ``representative``: each record
            joins the most similar of its verified neighbours that is a representative (the
            greedy independent set in keep order), so every removed record is similar to the
            record kept for it; chains split (same set: 1.000 / 0.68; judged pair by pair on
            exact Jaccard, precision 0.83 against 0.66, recall 0.87 against 1.00). Needs
            ``verify`` (the pairs' similarities).
        window_chars: texts longer than this are signed window by window (bounded memory).
        batch_size: records signed together.
        examples: removed near-duplicates shown beside their kept record in the report.
        bucket_partitions: shuffle partitions of the LSH band keys; one partition's keys are
            sorted on one worker (about 70 bytes of memory per key there), so raise it above
            ~documents x bands / 6M for very large corpora (256 suits ~100M documents).
    """

    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    bands: int = 0
    rows: int = 0
    fp_weight: float | None = None
    fn_weight: float | None = None
    seed: int = 1
    modalities: tuple[str, ...] = ("text",)
    verify: Literal["none", "signature", "exact"] = "signature"
    verify_threshold: float = 0.0
    bucket_roots: int = 1
    exact_margin: float = 0.1
    keep: KeepRule = "smallest_id"
    keep_field: str = ""
    max_rounds: int = 8
    on_not_converged: Literal["flag", "fail"] = "flag"
    cluster: Literal["components", "representative"] = "components"
    window_chars: int = 1 << 18
    batch_size: int = 256
    examples: int = 5
    bucket_partitions: int = 256

    def __post_init__(self) -> None:
        s = "minhash_dedup"
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"{s}.threshold", self.threshold, "a Jaccard similarity strictly between 0 and 1", "e.g. 0.8")
        if not 8 <= self.num_perm <= 1024:
            raise ConfigError(f"{s}.num_perm", self.num_perm, "an integer from 8 to 1024", "e.g. 128")
        if not 1 <= self.ngram <= 32:
            raise ConfigError(f"{s}.ngram", self.ngram, "an integer from 1 to 32", "e.g. 5 words per shingle")
        if (self.bands == 0) != (self.rows == 0) or self.bands < 0 or self.rows < 0:
            raise ConfigError(f"{s}.bands/rows", (self.bands, self.rows), "both 0 (derived from threshold) or both positive")
        if self.bands * self.rows > self.num_perm:
            raise ConfigError(f"{s}.bands*rows", self.bands * self.rows, f"at most num_perm ({self.num_perm})")
        fp, fn = self.weights()
        if fp < 0 or fn < 0 or fp + fn <= 0:
            raise ConfigError(f"{s}.fp_weight/fn_weight", (self.fp_weight, self.fn_weight), "non-negative, not both zero")
        bad = [m for m in self.modalities if m not in _MODALITIES]
        if bad or not self.modalities:
            raise ConfigError(f"{s}.modalities", list(self.modalities), f"a non-empty list from {', '.join(_MODALITIES)}")
        if self.verify not in ("none", "signature", "exact"):
            raise ConfigError(f"{s}.verify", self.verify, "signature, exact or none")
        if not 0.0 <= self.verify_threshold < 1.0:
            raise ConfigError(f"{s}.verify_threshold", self.verify_threshold,
                              "an estimated Jaccard in [0, 1) (0 means threshold)", "e.g. 0.8")
        if not 0.0 <= self.exact_margin < 1.0:
            raise ConfigError(f"{s}.exact_margin", self.exact_margin, "a number in [0, 1)", "e.g. 0.1")
        if self.cluster not in ("components", "representative"):
            raise ConfigError(f"{s}.cluster", self.cluster, "components or representative")
        if self.cluster == "representative" and self.verify == "none":
            raise ConfigError(f"{s}.cluster", self.cluster, "verify: signature or exact with cluster: representative",
                              "it weighs each verified pair by its similarity; set verify: signature")
        if not 1 <= self.bucket_roots <= 64:
            raise ConfigError(f"{s}.bucket_roots", self.bucket_roots, "an integer from 1 to 64")
        if self.window_chars < 1000:
            raise ConfigError(f"{s}.window_chars", self.window_chars, "at least 1000")
        if not 1 <= self.batch_size <= 100_000:
            raise ConfigError(f"{s}.batch_size", self.batch_size, "an integer from 1 to 100000")
        if not 1 <= self.bucket_partitions <= 1 << 20:
            raise ConfigError(f"{s}.bucket_partitions", self.bucket_partitions, "an integer from 1 to 1048576",
                              "about documents / 400,000 for large corpora")
        _common(s, self.keep, self.keep_field, self.max_rounds, self.on_not_converged, self.examples)

    def banding(self) -> tuple[int, int]:
        """``(bands, rows)``: as configured, or derived from the threshold."""
        if self.bands:
            return self.bands, self.rows
        from winnow.filters.dedup.lsh import optimal_bands

        return optimal_bands(self.threshold, self.num_perm, *self.weights())

    def weights(self) -> tuple[float, float]:
        """``(fp_weight, fn_weight)`` of the banding: as configured, else by ``verify``."""
        dfp, dfn = (0.3, 0.7) if self.verify == "none" else (0.01, 0.99)
        return (dfp if self.fp_weight is None else self.fp_weight, dfn if self.fn_weight is None else self.fn_weight)

    def signature_threshold(self) -> float:
        """The estimated-Jaccard bar of ``verify: signature``."""
        return self.verify_threshold or self.threshold


@dataclass(frozen=True)
class ImageDedupConfig:
    """Options of the ``image_dedup`` stage (perceptual-hash near-duplicates).

    Attributes:
        max_distance: the largest Hamming distance (of 64 bits) between the luma perceptual
            hashes of two images that count as duplicates.
        max_color_distance: the largest summed distance of their two chroma hashes (of 128
            bits; 128 turns the colour check off).
        bands, rows: Hamming LSH: ``bands`` keys of ``rows`` hash bits each (seeded bit
            samples); candidates are then checked against ``max_distance``.
        match: ``image`` (the image alone decides) or ``image+caption`` (image-text pairs must
            also have near-duplicate captions: Jaccard of word shingles >= caption_threshold).
        caption_threshold, caption_ngram: the caption check.
        seed: seeds the bit samples.
        keep, keep_field, max_rounds, on_not_converged, examples: as for ``minhash_dedup``.
    """

    max_distance: int = 10
    max_color_distance: int = 20
    bands: int = 32
    rows: int = 12
    match: Literal["image", "image+caption"] = "image"
    caption_threshold: float = 0.5
    caption_ngram: int = 2
    seed: int = 1
    keep: KeepRule = "smallest_id"
    keep_field: str = ""
    max_rounds: int = 8
    on_not_converged: Literal["flag", "fail"] = "flag"
    batch_size: int = 64
    examples: int = 5

    def __post_init__(self) -> None:
        s = "image_dedup"
        if not 0 <= self.max_distance <= 32:
            raise ConfigError(f"{s}.max_distance", self.max_distance, "an integer from 0 to 32 (bits of 64)")
        if not 0 <= self.max_color_distance <= 128:
            raise ConfigError(f"{s}.max_color_distance", self.max_color_distance, "an integer from 0 to 128")
        if not 1 <= self.bands <= 256:
            raise ConfigError(f"{s}.bands", self.bands, "an integer from 1 to 256")
        if not 4 <= self.rows <= 64:
            raise ConfigError(f"{s}.rows", self.rows, "an integer from 4 to 64 (hash bits per band)")
        if self.match not in ("image", "image+caption"):
            raise ConfigError(f"{s}.match", self.match, "image or image+caption")
        if not 0.0 < self.caption_threshold <= 1.0:
            raise ConfigError(f"{s}.caption_threshold", self.caption_threshold, "a Jaccard similarity in (0, 1]")
        if not 1 <= self.caption_ngram <= 8:
            raise ConfigError(f"{s}.caption_ngram", self.caption_ngram, "an integer from 1 to 8")
        if not 1 <= self.batch_size <= 10_000:
            raise ConfigError(f"{s}.batch_size", self.batch_size, "an integer from 1 to 10000")
        _common(s, self.keep, self.keep_field, self.max_rounds, self.on_not_converged, self.examples)
