"""Report sections of the audio stages: histograms, and sample rows with duration, MOS and transcript.

Each reads ``stats["stage_stats"][stage]`` and returns ``None`` when the stage did not run.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from winnow.pipeline.report import ReportSection, esc, html_table, svg_histogram

__all__ = ["audio_section", "audio_mos_section", "audio_asr_section", "sample_rows_html", "SAMPLE_COLUMNS"]

#: The columns a sample row shows, when the record has them.
SAMPLE_COLUMNS = ("id", "audio_duration", "audio_rms_dbfs", "audio_mos_ovrl", "audio_asr_wer", "text", "audio_asr_transcript")


def _stage(stats: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    s = (stats.get("stage_stats") or {}).get(name)
    return s if isinstance(s, Mapping) and s else None


def _hist(h: Any, **kw: Any) -> str:
    return svg_histogram(h, **kw) if isinstance(h, Mapping) and h.get("n") else ""


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.2f}"
    s = str(v)
    return s if len(s) <= 160 else s[:157] + "..."


def sample_rows_html(rows: Any) -> str:
    """A table of sample rows (dicts) with the :data:`SAMPLE_COLUMNS` any of them has."""
    if not isinstance(rows, Sequence) or not rows:
        return ""
    cols = [c for c in SAMPLE_COLUMNS if any(isinstance(r, Mapping) and r.get(c) is not None for r in rows)]
    body = [[_fmt(r.get(c)) for c in cols] for r in rows if isinstance(r, Mapping)]
    return html_table(cols, body)


def audio_section(stats: Mapping[str, Any], examples: Any, config: Mapping[str, Any]) -> ReportSection | None:
    s = _stage(stats, "audio")
    if s is None:
        return None
    cfg = config.get("audio") or {}
    body = ["<p>Audio decoded with libsndfile and resampled with soxr; drops for unreadable, short, long, "
            "mostly silent and clipped clips are in the funnel.</p>",
            _hist(s.get("audio_duration_hist"), title="duration of kept clips (s)", x_label="seconds",
                  threshold=cfg.get("min_seconds")),
            _hist(s.get("audio_rms_dbfs_hist"), title="RMS level of kept clips (dBFS)", x_label="dBFS"),
            _hist(s.get("audio_silence_ratio_hist"), title="share of silent frames", x_label="fraction",
                  threshold=cfg.get("max_silence_ratio"))]
    return ReportSection("Audio", "".join(body), "sec-audio")


def audio_mos_section(stats: Mapping[str, Any], examples: Any, config: Mapping[str, Any]) -> ReportSection | None:
    s = _stage(stats, "audio_mos")
    if s is None:
        return None
    cfg = config.get("audio_mos") or {}
    body = ["<p>DNSMOS (Microsoft's P.835 ONNX models shipped in the speechmos package): overall MOS "
            "from 1 to 5; the line is the configured minimum.</p>",
            _hist(s.get("mos_hist"), title="DNSMOS overall (OVRL) of scored clips", x_label="MOS",
                  threshold=cfg.get("min_mos")),
            sample_rows_html(s.get("samples"))]
    return ReportSection("Audio quality (DNSMOS)", "".join(body), "sec-audio-mos")


def audio_asr_section(stats: Mapping[str, Any], examples: Any, config: Mapping[str, Any]) -> ReportSection | None:
    s = _stage(stats, "audio_asr")
    if s is None:
        return None
    cfg = config.get("audio_asr") or {}
    model = esc(str(s.get("model") or cfg.get("model_dir") or ""))
    backend = "transformers" if (s.get("backend") or cfg.get("backend")) == "transformers" else "faster-whisper"
    body = [f"<p>Speech recognised with {backend} (model {model}); audio-only records carry the "
            "transcript as their text, captioned records are compared with it by word error rate.</p>",
            _hist(s.get("wer_hist"), title="word error rate, caption vs transcript", x_label="WER",
                  threshold=cfg.get("max_wer")),
            "<p>Sample rows (duration in seconds, level in dBFS, MOS, WER, caption and transcript):</p>",
            sample_rows_html(s.get("samples"))]
    return ReportSection("Audio transcripts (Whisper)", "".join(body), "sec-audio-asr")
