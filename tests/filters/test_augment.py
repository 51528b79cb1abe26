"""The pure augmentation classes: terms, chrF, choice, judging, synonyms, entities, images."""

import io
import json
import os
import shutil

import pytest

from winnow.errors import ConfigError
from winnow.filters.augment import AugmentConfig, Augmenter, chrf
from winnow.filters.augment_terms import TermShield, read_terms

TERMS = ("Kubernetes", "kubectl apply", "etcd", "pod")


def test_chrf_bounds_and_order():
    s = "The scheduler assigns pods to nodes."
    assert chrf(s, s) == pytest.approx(100.0)
    assert chrf("xyz qqq", "abc def") == 0.0
    small = chrf("The scheduler assigns pods to machines.", s)
    large = chrf("A planner gives work to computers.", s)
    assert 0 < large < small < 100
    assert chrf("", "") == 100.0 and chrf("", "a") == 0.0
    assert chrf("a b c", "abc") == pytest.approx(100.0)  # whitespace is ignored


def _chrf_by_definition(hypothesis, reference, order=6, beta=2.0):
    from collections import Counter

    h, r = "".join(hypothesis.split()), "".join(reference.split())
    if not h or not r:
        return 100.0 if h == r else 0.0
    ps, rs = [], []
    for n in range(1, order + 1):
        hn = Counter(h[i:i + n] for i in range(len(h) - n + 1))
        rn = Counter(r[i:i + n] for i in range(len(r) - n + 1))
        if hn and rn:
            match = sum((hn & rn).values())
            ps.append(match / sum(hn.values()))
            rs.append(match / sum(rn.values()))
    p, rc = sum(ps) / len(ps), sum(rs) / len(rs)
    return 0.0 if p == rc == 0 else 100.0 * (1 + beta ** 2) * p * rc / (beta ** 2 * p + rc)


def test_chrf_equals_its_definition_exactly():
    import random

    rng = random.Random(3)
    pairs = [("".join(rng.choice("abé c") for _ in range(rng.randint(0, 12))),
              "".join(rng.choice("ab cd") for _ in range(rng.randint(0, 12)))) for _ in range(2000)]
    pairs += [("The scheduler assigns pods to nodes.", "The planner gives pods to the nodes, again.")]
    for h, r in pairs:
        assert chrf(h, r) == _chrf_by_definition(h, r), (h, r)  # the same float, not just close


def test_shield_protects_restores_and_tolerates_reordering():
    sh = TermShield(TERMS)
    text = "Run `kubectl get pods` then kubectl apply; etcd keeps Kubernetes state, one pod."
    masked, found = sh.protect(text)
    assert found == ("`kubectl get pods`", "kubectl apply", "etcd", "Kubernetes", "pod")
    for t in TERMS:
        assert t not in masked
    assert sh.restore(masked, found) == text
    # a translator that moved and re-cased the placeholders still gets every term back
    moved = "zzt4zz, ZZT3ZZ state: Zzt2zz keeps ZZT1ZZ after ZZT0ZZ."
    back = sh.restore(moved, found)
    assert sh.lost(text, back) == ()
    assert sh.lost(text, "Run it then etcd keeps Kubernetes state.") == ("`kubectl get pods`", "kubectl apply", "pod")


def test_shield_whole_words_longest_first_and_case_fix():
    sh = TermShield(("pod", "pod network"), code_spans=False)
    assert sh.protect("pods and a pod network")[1] == ("pod network",)
    assert sh.counts("pod, pod network, pods") == {"pod": 1, "pod network": 1}
    assert TermShield.fix_case("ZZT0ZZ stores data.", "ZZT0ZZ Stores data.") == "ZZT0ZZ stores data."
    assert TermShield.fix_case("ZZT0ZZ Stores data.", "ZZT0ZZ Stores data.") == "ZZT0ZZ Stores data."


def test_shield_finds_what_a_plain_alternation_finds():
    import re

    from winnow.filters.augment_terms import _CODE, _pattern

    terms = ("C++", ".NET", "-x", "a]b", "^up", "Kubernetes", "kubectl apply", "pod", "\\path", "é-mail")
    sh = TermShield(terms)
    plain = re.compile("|".join([_CODE, *(_pattern(t) for t in sorted(terms, key=len, reverse=True))]))
    text = ("Use C++ and .NET, run -x on a]b, ^up the pod in Kubernetes with kubectl apply `cmd`; "
            "pods, C+, NET, \\path and é-mail. ") * 3
    assert sh.spans(text) == [m.span() for m in plain.finditer(text)]
    assert len(sh.spans(text)) == 33


def test_read_terms(tmp_path):
    p = tmp_path / "terms.txt"
    p.write_text("# comment\nKubernetes\n\nkubectl apply\nKubernetes\n")
    assert read_terms(str(p)) == ("Kubernetes", "kubectl apply")
    from winnow.errors import InputError

    with pytest.raises(InputError, match="augment.terms"):
        read_terms(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize(("candidate", "reason"), [
    ("Kubernetes schedules every pod on a node quickly.", None),
    ("Kubernetes  schedules each pod on a node quickly.", "augment_identical"),
    ("The system schedules each pod on a node quickly.", "augment_lost_term"),
    ("Kubernetes: zebra pod.", "augment_drift"),
    ("   ", "augment_empty"),
])
def test_judge(candidate, reason):
    aug = Augmenter(AugmentConfig(min_similarity=50), TERMS)
    got, score, _ = aug.judge("Kubernetes schedules each pod on a node quickly.", candidate)
    assert got == reason


def test_choice_is_a_pure_function_of_seed_and_id():
    cfg = AugmentConfig(fraction=0.3, seed=7, methods=("backtranslate", "synonym"))
    a, b = Augmenter(cfg), Augmenter(cfg)
    recs = [{"id": f"r{i}"} for i in range(4000)]
    picks = [a.choose(r) for r in recs]
    assert picks == [b.choose(r) for r in reversed(recs)][::-1]
    share = sum(p is not None for p in picks) / len(picks)
    assert 0.26 < share < 0.34
    assert {p for p in picks if p} == {"backtranslate", "synonym"}
    other = [Augmenter(AugmentConfig(fraction=0.3, seed=8)).choose(r) is not None for r in recs]
    assert other != [p is not None for p in picks]
    assert all(Augmenter(AugmentConfig(fraction=0.0)).choose(r) is None for r in recs[:100])
    assert all(Augmenter(AugmentConfig(fraction=1.0)).choose(r) for r in recs[:100])


class _FakeRoundTrip:
    """A stand-in translator: swaps a word, sometimes drops placeholders (counts its calls)."""

    def __init__(self):
        self.calls = []

    def backtranslate(self, texts):
        self.calls.append(len(texts))
        out = []
        for t in texts:
            if "drop" in t:
                out.append(t.replace("ZZT0ZZ", "it"))
            elif "same" in t:
                out.append(t)
            else:
                out.append(t.replace("quickly", "fast"))
        return out


def test_augment_batches_judges_and_builds_new_records():
    fake = _FakeRoundTrip()
    aug = Augmenter(AugmentConfig(fraction=1.0, min_similarity=30), TERMS, {"spa": fake})
    recs = [
        {"id": "a", "text": "Kubernetes restarts a pod quickly.", "source": "s:1", "modality": "text", "meta": "{}"},
        {"id": "b", "text": "etcd must drop old keys quickly.", "source": "s:2", "modality": "text", "meta": "{}"},
        {"id": "c", "text": "The same sentence twice.", "source": "s:3", "modality": "text", "meta": "{}"},
        {"id": "d", "text": "", "source": "s:4", "modality": "text", "meta": "{}"},
    ]
    before = json.dumps(recs, sort_keys=True)
    results = aug.augment(recs)
    assert fake.calls == [3]  # one call for the whole batch
    assert [[a.reason for a in r] for r in results] == [[None], ["augment_lost_term"], ["augment_identical"],
                                                        ["not_applicable"]]
    kept = results[0][0]
    assert kept.text == "Kubernetes restarts a pod fast." and kept.params == {"pivot": "spa"}
    new = aug.new_record(recs[0], kept)
    assert json.dumps(recs, sort_keys=True) == before  # originals unchanged
    assert new["aug_from"] == "a" and new["aug_method"] == "backtranslate" and new["id"] != "a"
    assert new["text"] == kept.text and new["source"] == "s:1" and json.loads(new["aug_params"]) == {"pivot": "spa"}
    assert aug.new_record(recs[0], kept)["id"] == new["id"]


def test_config_errors():
    with pytest.raises(ConfigError, match="augment.fraction"):
        AugmentConfig(fraction=1.5)
    with pytest.raises(ConfigError, match="augment.methods"):
        AugmentConfig(methods=("paraphrase",))
    with pytest.raises(ConfigError, match="augment.backend"):
        AugmentConfig(backend="google")


def test_missing_backends_name_the_package_or_path(tmp_path, monkeypatch):
    from winnow.filters.augment_replace import WordNet
    from winnow.filters.augment_translate import Seq2SeqTranslator, apertium_backtranslator

    with pytest.raises(ConfigError, match="augment.pivots"):
        apertium_backtranslator("deu")
    with pytest.raises(ConfigError, match="config.json"):
        Seq2SeqTranslator.check(str(tmp_path), "augment.forward_model")
    with pytest.raises(ConfigError, match="wordnet-base"):
        WordNet(str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="apt-get install apertium apertium-eng-spa"):
        apertium_backtranslator("spa")
    monkeypatch.undo()
    if shutil.which("apertium"):  # an Apertium without apertium-wblank-mode (before 3.8)
        from winnow.filters import augment_translate

        which = shutil.which
        monkeypatch.setattr(augment_translate.shutil, "which", lambda n: None if n == "apertium-wblank-mode" else which(n))
        with pytest.raises(ConfigError, match="apertium-wblank-mode"):
            apertium_backtranslator("spa")


needs_wordnet = pytest.mark.skipif(not os.path.isfile("/usr/share/wordnet/index.noun"),
                                   reason="WordNet files missing: make install (as root) installs wordnet-base")


@needs_wordnet
def test_synonyms_replace_a_bounded_share_and_leave_protected_and_stop_words():
    from winnow.filters.augment_replace import SynonymReplacer

    rep = SynonymReplacer("/usr/share/wordnet", 0.5)
    text = "The error is important, so the operator quickly reports the error to the etcd team."
    spans = TermShield(("etcd", "operator")).spans(text)
    out, changed = rep.replace(text, spans, 1)
    assert changed and out != text
    assert out == rep.replace(text, spans, 1)[0]
    assert "etcd" in out and "operator" in out
    words = {w for w, _ in changed}
    assert not words & {"the", "is", "so", "to", "etcd", "operator"}
    assert len(changed) <= max(1, round(0.5 * 4)) + 1
    for w, s in changed:
        assert s.isalpha() and s.islower() and s != w


def test_entities_get_consistent_surrogates_of_the_same_type():
    from winnow.filters.augment_replace import EntityReplacer

    text = "On 2024-03-05 we told Maria Schmidt that 42 servers at 10.0.0.1 wrote to ops@corp.com; 42 failed."
    out, changed = EntityReplacer().replace(text, [], 3)
    kinds = {k for k, _, _ in changed}
    assert kinds == {"date", "name", "number", "ipv4", "email"}
    table = {v: s for _, v, s in changed}
    assert out.count(table["42"]) == 2 and "42" not in out.replace(table["42"], "")
    assert "ops@corp.com" not in out and table["ops@corp.com"].endswith("@example.org")
    protected = TermShield(("Maria Schmidt",), code_spans=False).spans(text)
    assert "Maria Schmidt" in EntityReplacer().replace(text, protected, 3)[0]


def test_images_keep_80_percent_and_colour_within_20_percent():
    from PIL import Image

    from winnow.filters.augment_image import perturb_image

    buf = io.BytesIO()
    Image.new("RGB", (97, 61), (120, 80, 200)).save(buf, format="PNG")
    data = buf.getvalue()
    for seed in range(60):
        out, p = perturb_image(data, seed)
        w, h = Image.open(io.BytesIO(out)).size
        assert (w, h) == tuple(p["crop"][2:])
        assert w * h >= 0.8 * 97 * 61 and p["area_kept"] >= 0.8
        for k in ("brightness", "contrast", "saturation"):
            assert 0.8 <= p[k] <= 1.2
    assert perturb_image(data, 5) == perturb_image(data, 5)


needs_apertium = pytest.mark.skipif(shutil.which("apertium") is None,
                                    reason="apertium missing: make install (as root) installs it")


@needs_apertium
def test_apertium_batches_equal_single_calls_and_keep_placeholders():
    from winnow.filters.augment_translate import ApertiumTranslator, apertium_backtranslator

    texts = ["The function returns a list of integers when the input is valid.",
             "ZZT0ZZ stores the state\nof ZZT1ZZ on two lines",
             "Use ZZT0ZZ to deploy it."]
    from winnow.filters.augment_apertium import chains_started

    t = ApertiumTranslator("eng-spa")
    t.close()
    before = chains_started("eng-spa")
    batch = t.translate(texts)
    assert len(batch) == 3
    assert batch == [t.translate([x])[0] for x in texts]
    assert chains_started("eng-spa") == before + 1  # one kept chain for all the calls
    assert "ZZT0ZZ" in batch[1] and "ZZT1ZZ" in batch[1] and "ZZT0ZZ" in batch[2]
    bt = apertium_backtranslator("cat")
    back = bt.backtranslate(texts)
    assert len(back) == 3 and all("ZZT0ZZ" in b for b in back[1:])


def test_image_records_get_a_new_image_with_recorded_parameters_and_the_caption():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, format="PNG")
    rec = {"id": "img1", "source": "s", "modality": "image_text", "text": "a green square", "image": buf.getvalue(),
           "meta": "{}"}
    aug = Augmenter(AugmentConfig(fraction=1.0, methods=("image",)))
    (a,), (none,) = aug.augment([rec, {"id": "t", "modality": "text", "text": "no image here"}])
    assert a.reason is None and none.reason == "not_applicable"
    new = aug.new_record(rec, a)
    assert new["text"] == "a green square" and new["image"] != rec["image"] and new["aug_method"] == "image"
    p = json.loads(new["aug_params"])
    assert p["area_kept"] >= 0.8 and all(0.8 <= p[k] <= 1.2 for k in ("brightness", "contrast", "saturation"))
    assert Image.open(io.BytesIO(new["image"])).size == tuple(p["crop"][2:])


def test_methods_are_chosen_among_those_that_apply():
    aug = Augmenter(AugmentConfig(fraction=1.0, methods=("entity", "image")))
    texts = [aug.choose({"id": f"t{i}", "text": "There are 42 of them."}) for i in range(200)]
    images = [aug.choose({"id": f"i{i}", "image": b"x"}) for i in range(200)]
    pairs = {aug.choose({"id": f"p{i}", "image": b"x", "text": "caption 7"}) for i in range(200)}
    assert set(texts) == {"entity"} and set(images) == {"image"} and pairs == {"entity", "image"}


@needs_apertium
def test_apertium_round_trip_runs_both_kept_chains_with_the_two_call_output():
    from winnow.filters.augment_translate import apertium_backtranslator

    texts = ["The scheduler restarts every failed job after a short delay.",
             "ZZT0ZZ keeps the state of the cluster\nand reports errors.",
             "Use ZZT0ZZ to deploy it, then check the logs."]
    from winnow.filters.augment_apertium import chains_started

    bt = apertium_backtranslator("spa")
    bt.close()
    before = chains_started("eng-spa"), chains_started("spa-eng")
    chained = bt.backtranslate(texts)
    assert chained == bt.backward.translate(bt.forward.translate(texts))
    assert (chains_started("eng-spa"), chains_started("spa-eng")) == (before[0] + 1, before[1] + 1)
    assert all("ZZT0ZZ" in b for b in chained[1:])


@needs_apertium
def test_pivots_run_concurrently_with_the_serial_result():
    from winnow.filters.augment import AugmentConfig, Augmenter
    from winnow.filters.augment_translate import apertium_backtranslator

    recs = [{"id": f"r{i}", "text": f"The build server number {i} updates the database backups every night."}
            for i in range(12)]
    cfg = AugmentConfig(fraction=1.0, pivots=("spa", "epo"))
    aug = Augmenter(cfg, ("database",), {p: apertium_backtranslator(p) for p in cfg.pivots})
    both = aug.augment(recs)
    assert {a.params["pivot"] for (a,) in both} == {"spa", "epo"}
    for pivot in cfg.pivots:  # each pivot alone, in series, gives the same attempts for its records
        mine = [r for r in recs if aug.pivot(r) == pivot]
        alone = Augmenter(AugmentConfig(fraction=1.0, pivots=(pivot,)), ("database",),
                          {pivot: apertium_backtranslator(pivot)}).augment(mine)
        got = [a for r, (a,) in zip(recs, both) if aug.pivot(r) == pivot]
        assert [(a.text, a.reason) for (a,) in alone] == [(a.text, a.reason) for a in got]


@needs_apertium
def test_streamed_judging_equals_judging_after_the_whole_batch():
    from winnow.filters.augment import AugmentConfig, Augmenter
    from winnow.filters.augment_translate import apertium_backtranslator

    class _Plain:  # backtranslate(texts) only: the Augmenter judges after the whole batch
        def __init__(self, bt):
            self.bt = bt

        def backtranslate(self, texts):
            return self.bt.backtranslate(texts)

    recs = [{"id": f"r{i}", "text": t} for i, t in enumerate([
        "The database keeps every backup of the cluster.", "Run `make test` before the database is moved.",
        "Same.", "The scheduler restarts the failed jobs of the database quickly."] * 3)]
    cfg = AugmentConfig(fraction=1.0, pivots=("spa", "epo"))
    bts = {p: apertium_backtranslator(p) for p in cfg.pivots}
    streamed = Augmenter(cfg, ("database",), bts).augment(recs)
    after = Augmenter(cfg, ("database",), {p: _Plain(bt) for p, bt in bts.items()}).augment(recs)
    assert [(a.text, a.reason, a.chrf, a.lost, a.params) for (a,) in streamed] == \
        [(a.text, a.reason, a.chrf, a.lost, a.params) for (a,) in after]
    assert {a.reason for (a,) in streamed} >= {None}
