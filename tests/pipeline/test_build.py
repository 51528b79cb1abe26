"""Building the run's graph: the options' views are made once per class while the graph is built."""

import json
import pickle

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TypeOptions

from winnow.pipeline.build import _views_reused, build_pipeline
from winnow.pipeline.configure import load_config
from winnow.pipeline.readers import expand_inputs


def test_a_reused_view_reads_and_writes_the_same_options():
    opts = PipelineOptions(["--runner=FnApiRunner"])
    with _views_reused(opts):
        view = opts.view_as(StandardOptions)
        assert opts.view_as(StandardOptions) is view and view.runner == "FnApiRunner"
        view.streaming = True  # written through one view, seen through every view
        assert opts.view_as(StandardOptions).streaming is True
        assert opts.view_as(TypeOptions).pipeline_type_check is True
    assert "view_as" not in vars(opts)  # Beam's own view_as again after the build
    assert opts.view_as(StandardOptions).streaming is True
    assert opts.view_as(StandardOptions) is not opts.view_as(StandardOptions)
    assert pickle.loads(pickle.dumps(opts)).view_as(StandardOptions).streaming is True


def test_building_the_graph_makes_each_view_once(tmp_path, monkeypatch):
    made: list = []
    real = PipelineOptions.view_as
    monkeypatch.setattr(PipelineOptions, "view_as", lambda self, cls: made.append(cls) or real(self, cls))
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"record number {i} " * 5}) + "\n" for i in range(20)))
    cfg = load_config(None, input=[str(src)], output=str(tmp_path / "out"),
                      stages=["normalize", "exact_dedup", "quality", "minhash_dedup"], overrides=[])
    p = beam.Pipeline(runner="FnApiRunner")
    made.clear()
    build_pipeline(p, cfg, expand_inputs(cfg.input, cfg.reader), local=True)
    in_build = list(made)
    assert len(p.to_runner_api().components.transforms) > 200
    assert len(in_build) == len(set(in_build)) < 20  # one view per class asked for (Beam alone: ~5 per transform)
    assert "view_as" not in vars(p.options)
