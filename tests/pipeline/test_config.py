"""Config loading: YAML, --set overrides, stage lists, and errors that name key and value."""

import pytest
import yaml

from winnow.errors import ConfigError
from winnow.filters.normalize import NormalizeConfig
from winnow.pipeline.config import (
    DEFAULT_STAGES,
    apply_overrides,
    config_hash,
    config_to_dict,
)
from winnow.pipeline.configure import load_config


def write(tmp_path, data):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(p)


def test_defaults():
    cfg = load_config()
    assert cfg.stages == DEFAULT_STAGES
    assert cfg.options("normalize") == NormalizeConfig()
    assert cfg.sink.compression == "none"


def test_yaml_sections_overrides_and_cli_values(tmp_path):
    path = write(tmp_path, {
        "input": "data/*.jsonl",
        "output": "out/a",
        "stages": ["normalize"],
        "reader": {"text_field": "content", "meta_fields": ["url", "lang"]},
        "sink": {"shard_bytes": "128MB", "compression": "zstd"},
        "normalize": {"form": "NFKC"},
    })
    cfg = load_config(path, overrides=["sink.batch_bytes=1MiB", "normalize.collapse_whitespace=true"], output="out/b")
    assert cfg.input == ("data/*.jsonl",)
    assert cfg.output == "out/b"  # CLI wins over the file
    assert cfg.stages == ("normalize",)
    assert cfg.reader.text_field == "content" and cfg.reader.meta_fields == ("url", "lang")
    assert cfg.sink.shard_bytes == 128 * 10**6 and cfg.sink.batch_bytes == 2**20
    assert cfg.sink.compression == "zstd"
    assert cfg.options("normalize") == NormalizeConfig(form="NFKC", collapse_whitespace=True)


def test_stages_from_cli_override_the_file(tmp_path):
    cfg = load_config(write(tmp_path, {"stages": ["normalize"]}), stages=["exact_dedup", "normalize"])
    assert cfg.stages == ("exact_dedup", "normalize")


@pytest.mark.parametrize(
    "overrides, key, fragment",
    [
        (["sink.shard_bytes=lots"], "sink.shard_bytes", "byte size"),
        (["sink.compression=gzip"], "sink.compression", "'lz4'"),
        (["sink.min_shards=0"], "sink.min_shards", ">= 1"),
        (["sink.overwrite=maybe"], "sink.overwrite", "true or false"),
        (["reader.text_fieldd=x"], "reader.text_fieldd", "text_field"),
        (["readr.text_field=x"], "readr", "sections"),
        (["stages=[normalize, tokenize_all]"], "stages", "one of"),
        (["stages=[normalize, normalize]"], "stages", "at most once"),
        (["normalize.form=NFX"], "normalize.form", "NFKC"),
        (["report.examples_per_reason=1000"], "report.examples_per_reason", "0..100"),
        (["nodot"], "--set", "key=value"),
        (["reader..x=1"], "--set", "dotted"),
    ],
)
def test_bad_values_name_key_value_and_allowed(overrides, key, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    msg = str(info.value)
    assert info.value.key == key, msg
    assert fragment in msg


def test_bad_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="valid YAML"):
        load_config(write(tmp_path, "a: [unclosed"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))
    with pytest.raises(ConfigError, match="readable"):
        load_config(str(tmp_path / "missing.yaml"))


def test_require_io():
    with pytest.raises(ConfigError, match="--input"):
        load_config(output="o").require_io()
    with pytest.raises(ConfigError, match="--output"):
        load_config(input=["x"]).require_io()


def test_resolved_config_round_trips_and_hash_ignores_output():
    cfg = load_config(overrides=["normalize.form=NFKC"], input=["a"], output="o1")
    d = config_to_dict(cfg)
    assert d["normalize"]["form"] == "NFKC" and d["exact_dedup"]["key"] == "auto"
    again = load_config(overrides=[f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in d.items()])
    assert config_to_dict(again) == d
    other_out = load_config(overrides=["normalize.form=NFKC"], input=["a"], output="o2")
    assert config_hash(cfg) == config_hash(other_out)
    assert config_hash(cfg) != config_hash(load_config(input=["a"], output="o1"))


def test_overrides_do_not_mutate_input():
    base = {"sink": {"shard_bytes": 1}}
    apply_overrides(base, ["sink.shard_bytes=2"])
    assert base == {"sink": {"shard_bytes": 1}}
