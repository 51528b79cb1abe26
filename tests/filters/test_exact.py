"""Exact-duplicate keys."""

import pytest

from winnow.filters.exact import ExactDedupConfig, exact_key, pick_survivor

T = lambda text: {"modality": "text", "text": text}  # noqa: E731
I = lambda img, text=None: {"modality": "image_text" if text is not None else "image", "text": text, "image": img}  # noqa: E731


@pytest.mark.parametrize(
    "a, b, cfg, same",
    [
        (T("hello world"), T("hello world"), ExactDedupConfig(), True),
        (T("hello world"), T("hello  world\n"), ExactDedupConfig(), True),  # whitespace ignored by default
        (T("hello world"), T("hello  world"), ExactDedupConfig(ignore_whitespace=False), False),
        (T("Hello World"), T("hello world"), ExactDedupConfig(), False),
        (T("Hello World"), T("hello world"), ExactDedupConfig(casefold=True), True),
        (T("ab"), T("abc"), ExactDedupConfig(), False),
        (I(b"\x01\x02"), I(b"\x01\x02"), ExactDedupConfig(), True),
        (I(b"\x01\x02"), I(b"\x01\x03"), ExactDedupConfig(), False),
        (I(b"\x01", "cat"), I(b"\x01", "dog"), ExactDedupConfig(), False),  # auto: image_text needs both
        (I(b"\x01", "cat"), I(b"\x01", "dog"), ExactDedupConfig(key="media"), True),
        (I(b"\x01", "cat"), I(b"\x02", "cat"), ExactDedupConfig(key="text"), True),
        (T("x"), {"modality": "image_text", "text": "x", "image": None}, ExactDedupConfig(key="text"), False),  # modality differs
    ],
)
def test_exact_key(a, b, cfg, same):
    assert (exact_key(a, cfg) == exact_key(b, cfg)) is same


def test_key_is_stable_hex():
    k = exact_key(T("stable"), ExactDedupConfig())
    assert len(k) == 32 and int(k, 16) >= 0
    assert k == exact_key(T("stable"), ExactDedupConfig())


def test_survivor_is_smallest_id_then_source():
    assert pick_survivor([("b", "s1"), ("a", "s9"), ("a", "s2")]) == ("a", "s2")
