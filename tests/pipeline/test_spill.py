"""SpillingGroupByKey: the groups of a GroupByKey, values read back from spill files."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from winnow.pipeline import spill
from winnow.pipeline.spill import SpillingGroupByKey


def _pairs():
    # keys of several types, values of several sizes, some keys in many bundles' flushes
    return [(i % 7, ("v", i, b"x" * (i % 50))) for i in range(400)] + [(("t", 1), None), ("s", [1, 2])]


def _sorted_groups(kv):
    return kv[0], sorted(kv[1], key=repr)


def test_groups_equal_a_plain_group_by_key_and_the_spill_folder_goes(tmp_path, monkeypatch):
    files = []
    real_flush = spill._SpillValuesFn._flush

    def counting(self):
        refs = real_flush(self)
        files.extend({r[1][0] for r in refs})
        return refs

    monkeypatch.setattr(spill._SpillValuesFn, "_flush", counting)
    expected = {}
    for k, v in _pairs():
        expected.setdefault(k, []).append(v)
    want = [(k, sorted(vs, key=repr)) for k, vs in expected.items()]
    with beam.Pipeline(runner="FnApiRunner") as p:
        grouped = (p | beam.Create(_pairs(), reshuffle=False)
                   | SpillingGroupByKey(str(tmp_path / ".tmp-spill-x"), flush_bytes=2_000)
                   | beam.Map(_sorted_groups))
        assert_that(grouped, equal_to(want))
    assert len(set(files)) > 3  # flushed by bytes: several files, each with runs of several keys
    assert not list(tmp_path.iterdir())  # the folder was removed after every group was read


def test_without_a_spill_folder_it_is_a_plain_group_by_key():
    with beam.Pipeline(runner="FnApiRunner") as p:
        grouped = p | beam.Create([(1, "a"), (1, "b"), (2, "c")]) | SpillingGroupByKey(None) | beam.Map(_sorted_groups)
        assert_that(grouped, equal_to([(1, ["a", "b"]), (2, ["c"])]))
