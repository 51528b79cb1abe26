"""PII detectors and actions: literal tables, then the generated labelled set (>= 500 positives)."""

import pytest

from winnow.errors import ConfigError
from winnow.filters.pii import PIIConfig, PIIFilter
from winnow.filters.pii_detectors import PII_TYPES, find_pii, iban_ok, luhn_ok
from winnow.demo.pii_evalset import evaluate, format_table, generate

FOUND = [
    # (text, [(value, type), ...])
    ("Write to jane.doe+news@mail.example.co.uk today.", [("jane.doe+news@mail.example.co.uk", "email")]),
    ("Call +1 415-555-2671 or (212) 736-5000.", [("+1 415-555-2671", "phone"), ("(212) 736-5000", "phone")]),
    ("Office: +44 20 7946 0958, mobile +4915123456789.", [("+44 20 7946 0958", "phone"), ("+4915123456789", "phone")]),
    ("Host 192.168.1.10 answered.", [("192.168.1.10", "ipv4")]),
    ("Gateway 255.255.255.1 (not a netmask), host 128.0.0.1.", [("255.255.255.1", "ipv4"), ("128.0.0.1", "ipv4")]),
    ("Host 2001:db8::8a2e:370:7334 answered.", [("2001:db8::8a2e:370:7334", "ipv6")]),
    ("Card 4111 1111 1111 1111 was charged.", [("4111 1111 1111 1111", "credit_card")]),
    ("Amex 3782-822463-10005 on file.", [("3782-822463-10005", "credit_card")]),
    ("IBAN DE89 3704 0044 0532 0130 00 SWIFT", [("DE89 3704 0044 0532 0130 00", "iban")]),
    ("Account GB82WEST12345698765432.", [("GB82WEST12345698765432", "iban")]),
    ("SSN 123-45-6789 on the form.", [("123-45-6789", "us_ssn")]),
    ("key AKIAIOSFODNN7EXAMPLE here", [("AKIAIOSFODNN7EXAMPLE", "secret")]),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", [("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "secret")]),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", [("abcdefghijklmnopqrstuvwxyz012345", "secret")]),
    ("token bEaReR abcdefghijklmnopqrstuvwxyz0123", [("abcdefghijklmnopqrstuvwxyz0123", "secret")]),  # any case
    ("x; AwS_sEcReT_aCcEsS_kEy = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     [("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "secret")]),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
     "-----END RSA PRIVATE KEY-----", [("-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
                                      "-----END RSA PRIVATE KEY-----", "secret")]),
    ("GCP key AIzaSyA-1234567890abcdefghijklmnopqrstu in the config", [("AIzaSyA-1234567890abcdefghijklmnopqrstu", "secret")]),
]

NOT_FOUND = [
    "Upgrade to version 3.10.12 now.",
    "Released on 2024-03-15 and 15.03.2024.",
    "ISBN 978-0-306-40615-7 is the print edition.",
    "Order ORD-2024-008812 shipped, invoice #1002345.",
    "Request 123e4567-e89b-12d3-a456-426614174000 failed.",
    "Commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b fixed it.",
    "The card 4111 1111 1111 1112 fails Luhn.",
    "MAC 00:1A:2B:3C:4D:5E on eth0.",
    "It ran from 12:30:45 for an hour.",
    "route add -net 127.0.0.0 netmask 255.0.0.0 dev lo; the default route is 0.0.0.0.",
    "Genmask 255.255.255.252 and broadcast 255.255.255.255 for the link.",
    "Build v1.2.3.4 and 10.0.19041.1 are current.",
    "Revenue was 1,234,567.89 USD.",
    "Slice a[::2] takes every second item.",
    "Use std::vector for that.",
    "The decorator @property makes an attribute.",
]


@pytest.mark.parametrize("text,expected", FOUND)
def test_found(text, expected):
    got = [(text[s.start:s.end], s.type) for s in find_pii(text)]
    assert got == expected


@pytest.mark.parametrize("text", NOT_FOUND)
def test_hard_negatives(text):
    assert [(text[s.start:s.end], s.type) for s in find_pii(text)] == []


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE88 3704 0044 0532 0130 00")
    assert not iban_ok("XX89370400440532013000")


TEXT = "Mail a.b@example.com or call +1 415-555-2671; key AKIAIOSFODNN7EXAMPLE."


def test_actions_redact_hash_drop_annotate_off():
    rec, v = PIIFilter(PIIConfig(secret="redact")).process({"text": TEXT, "modality": "text"})
    assert v.keep and rec["text"] == "Mail <EMAIL> or call <PHONE>; key <SECRET>."
    assert (rec["pii_email"], rec["pii_phone"], rec["pii_secret"], rec["pii_iban"]) == (1, 1, 1, 0)

    rec, v = PIIFilter().process({"text": TEXT, "modality": "text"})  # secrets drop by default
    assert not v.keep and v.reason == "pii_secret" and rec["pii_secret"] == 1

    f = PIIFilter(PIIConfig(email="hash", phone="annotate", secret="off"))
    rec, v = f.process({"text": TEXT, "modality": "text"})
    assert v.keep and "+1 415-555-2671" in rec["text"] and "AKIA" in rec["text"]
    assert rec["text"].startswith("Mail <EMAIL:") and rec["pii_secret"] == 0 and rec["pii_phone"] == 1
    again, _ = f.process({"text": "x a.b@example.com", "modality": "text"})
    assert again["text"].split()[-1] == rec["text"].split()[1]  # same value, same hash

    rec, v = PIIFilter().process({"text": None, "image": b"x", "modality": "image"})
    assert v.keep and rec["pii_email"] is None


def test_config_errors():
    with pytest.raises(ConfigError, match="pii.email"):
        PIIConfig(email="scramble")
    with pytest.raises(ConfigError, match="phone_region"):
        PIIConfig(phone_region="usa")


def test_presidio_without_install_is_a_config_error():
    try:
        import presidio_analyzer  # noqa: F401
        pytest.skip("presidio is installed here")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="presidio"):
        PIIFilter(PIIConfig(presidio=True))


def test_labelled_set_precision_and_recall_per_type():
    docs = generate()
    positives = sum(len(d.spans) for d in docs)
    negatives = sum(d.negatives for d in docs)
    assert positives >= 500 and negatives >= 300
    result = evaluate(docs)
    print(f"\n{len(docs)} documents, {positives} positives, {negatives} hard negatives\n" + format_table(result))
    for t in PII_TYPES:
        assert result[t]["gold"] >= 50, t
        assert result[t]["recall"] >= 0.98, (t, result[t])
        assert result[t]["precision"] >= 0.95, (t, result[t])
