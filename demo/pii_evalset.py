"""A generated, labelled PII evaluation set: positives of every type in realistic sentences,
plus hard negatives that look like PII but are not (versions, dates, ISBNs, order numbers,
UUIDs, hashes, card-like numbers failing Luhn, MAC addresses, times, amounts).

Positives are valid by construction (Luhn and issuer prefix for cards, mod-97 for IBANs,
phonenumbers' numbering plans for phones, SSA ranges for SSNs). Documents mix several labelled
sentences with neutral filler (``pydoc`` topic sentences with no digits and no ``@``), so
detectors see real prose around the values. :func:`evaluate` scores a detector per type: a
finding is correct when it overlaps a labelled span of the same type.

Run ``python -m winnow.demo.pii_evalset`` to print precision and recall per type.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import re
import string
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from winnow.filters.pii_detectors import IBAN_LENGTHS, PII_TYPES, Span, find_pii, luhn_ok

__all__ = ["LabelledDoc", "generate", "evaluate", "format_table", "sample_value"]


@dataclass(frozen=True)
class LabelledDoc:
    """One document and its labelled spans (``negatives`` counts the hard negatives in it)."""

    text: str
    spans: tuple[Span, ...]
    negatives: int


_FIRST = "anna ben carla david emma felix grace hugo ines jonas kira liam maya noah olga paul rosa sam tara ugo".split()
_LAST = "smith mueller garcia rossi dubois nowak jensen tanaka kim silva novak ivanova brown weber martin".split()
_DOMAINS = ["example.com", "mail.example.org", "uni-bonn.de", "corp.example.co.uk", "post.example.fr",
            "example.net", "dept.example.edu", "mx.example.io"]


def _email(rng: random.Random) -> str:
    f, last = rng.choice(_FIRST), rng.choice(_LAST)
    local = rng.choice([f"{f}.{last}", f"{f[0]}{last}", f"{f}_{last}{rng.randint(1, 99)}", f"{f}+news", last])
    return f"{local}@{rng.choice(_DOMAINS)}"


def _phone(rng: random.Random) -> str:
    import phonenumbers
    from phonenumbers import PhoneNumberFormat as F
    from phonenumbers import PhoneNumberType as T

    while True:
        region = rng.choice(["US", "US", "US", "GB", "DE", "FR", "IN", "BR", "JP", "AU", "ES", "IT"])
        ex = phonenumbers.example_number_for_type(region, rng.choice([T.MOBILE, T.FIXED_LINE]))
        if ex is None:
            continue
        nat = str(ex.national_number)
        nat = nat[:-4] + "".join(rng.choice(string.digits) for _ in range(4))
        num = phonenumbers.parse(f"+{ex.country_code}{nat}")
        if not phonenumbers.is_valid_number(num):
            continue
        if region == "US":
            fmt = rng.choice(["nat", "dash", "dot", "intl", "e164"])
            n = str(num.national_number)
            return {"nat": phonenumbers.format_number(num, F.NATIONAL), "dash": f"{n[:3]}-{n[3:6]}-{n[6:]}",
                    "dot": f"{n[:3]}.{n[3:6]}.{n[6:]}", "intl": phonenumbers.format_number(num, F.INTERNATIONAL),
                    "e164": phonenumbers.format_number(num, F.E164)}[fmt]
        return phonenumbers.format_number(num, rng.choice([F.INTERNATIONAL, F.E164]))


def _ipv4(rng: random.Random) -> str:
    first = rng.choice([10, 172, 192, 8, 45, 81, 100, 203, 151])
    return ".".join(str(x) for x in (first, rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254)))


def _ipv6(rng: random.Random) -> str:
    groups = [rng.choice([0x2001, 0x2a00, 0xfe80, 0x2607]), 0xdb8] + [
        rng.choice([0, 0, rng.randint(1, 0xFFFF)]) for _ in range(6)]
    groups[-1] = groups[-1] or rng.randint(1, 0xFFFF)
    addr = ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups))
    return addr.compressed if rng.random() < 0.7 else addr.exploded


def _luhn_digit(body: str) -> str:
    for d in string.digits:
        if luhn_ok(body + d):
            return d
    raise AssertionError("unreachable")


def _card_number(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice([("4", 16), ("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15),
                                 ("37", 15), ("6011", 16), ("65", 16), ("3530", 16)])
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    check = _luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    digits = body + check
    style = rng.choice(["space", "dash", "plain"])
    if style == "plain":
        return digits
    sep = " " if style == "space" else "-"
    groups = (4, 6, 5) if length == 15 else (4, 4, 4, 4)
    out, i = [], 0
    for g in groups:
        out.append(digits[i:i + g])
        i += g
    return sep.join(out)


_IBAN_BBAN = {"DE": "8n10n", "GB": "4a14n", "FR": "10n11c2n", "ES": "20n", "IT": "1a10n12c", "NL": "4a10n",
              "CH": "5n12c", "AT": "16n", "BE": "12n", "PL": "24n", "SE": "20n", "PT": "21n"}


def _iban(rng: random.Random) -> str:
    cc = rng.choice(sorted(_IBAN_BBAN))
    bban = ""
    for n, kind in re.findall(r"(\d+)([anc])", _IBAN_BBAN[cc]):
        pool = {"a": string.ascii_uppercase, "n": string.digits, "c": string.ascii_uppercase + string.digits}[kind]
        bban += "".join(rng.choice(pool) for _ in range(int(n)))
    num = int("".join(str(int(ch, 36)) for ch in bban + cc + "00"))
    iban = f"{cc}{98 - num % 97:02d}{bban}"
    assert len(iban) == IBAN_LENGTHS[cc]
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.6 else iban


def _ssn(rng: random.Random) -> str:
    area = rng.choice([rng.randint(1, 665), rng.randint(667, 899)])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def _b64(rng: random.Random, n: int) -> str:
    return base64.b64encode(rng.randbytes(n)).decode()


def _secret(rng: random.Random) -> str:
    kind = rng.randrange(6)
    up = string.ascii_uppercase + string.digits
    if kind == 0:
        body = _b64(rng, 480)
        lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
        k = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
        return f"-----BEGIN {k}PRIVATE KEY-----\n{lines}\n-----END {k}PRIVATE KEY-----"
    if kind == 1:
        return rng.choice(["AKIA", "ASIA"]) + "".join(rng.choice(up) for _ in range(16))
    if kind == 2:
        return "AIza" + "".join(rng.choice(string.ascii_letters + string.digits + "_-") for _ in range(35))
    if kind == 3:
        return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))
    if kind == 4:
        head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
        jwt = f"{head}.{_b64(rng, 30).rstrip('=').replace('+', '-').replace('/', '_')}.{_b64(rng, 24).rstrip('=')}"
        return f"Bearer {jwt}"
    key = "".join(rng.choice(string.ascii_letters + string.digits + "/+") for _ in range(40))
    return f"{rng.choice(['aws_secret_access_key', 'AWS_SECRET_ACCESS_KEY'])}={key}"


_TEMPLATES: dict[str, list[str]] = {
    "email": ["For questions write to {} and we will answer within two days.", "Contact: {}",
              "The report was sent by {} on Monday.", "Send your CV to {}, subject line \"application\"."],
    "phone": ["Call us at {} between nine and five.", "Her mobile number is {}.", "Phone: {}",
              "If the line is busy, try {} instead."],
    "ipv4": ["The server listens on {} port 8080.", "Requests from {} were blocked by the firewall.",
             "Set the gateway to {}."],
    "ipv6": ["The host resolves to {} on the internal network.", "Blocked address: {}", "Ping {} to test it."],
    "credit_card": ["Please charge my card {} for the order.", "Card number: {}, expiry 04/27.",
                    "The payment with {} was declined."],
    "iban": ["Transfer the deposit to IBAN {} by Friday.", "Account: {}", "Our bank details are {} (BIC on request)."],
    "us_ssn": ["Employee SSN: {}", "Her social security number is {}.", "Enter {} in box 3 of the form."],
    "secret": ["Use the key {} to sign requests.", "export AWS_ACCESS_KEY_ID={}", "Authorization: Bearer {}",
               "The deploy token is {} until rotation.", "key file:\n{}\n"],
}
_GEN: dict[str, Callable[[random.Random], str]] = {
    "email": _email, "phone": _phone, "ipv4": _ipv4, "ipv6": _ipv6, "credit_card": _card_number,
    "iban": _iban, "us_ssn": _ssn, "secret": _secret,
}


def sample_value(pii_type: str, rng: random.Random) -> str:
    """One valid value of ``pii_type`` (as the labelled set plants them)."""
    return _GEN[pii_type](rng)


def _negative(rng: random.Random) -> str:
    hexd = string.hexdigits[:16]
    kind = rng.randrange(14)
    if kind == 0:
        return f"Upgrade to version {rng.randint(1, 20)}.{rng.randint(0, 40)}.{rng.randint(0, 99)} before the release."
    if kind == 1:
        return f"The meeting moved to {rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}."
    if kind == 2:
        return f"It was signed on {rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(1990, 2030)} in Bonn."
    if kind == 3:
        digits = "978" + "".join(rng.choice(string.digits) for _ in range(9))
        chk = (10 - sum((1 if i % 2 == 0 else 3) * int(d) for i, d in enumerate(digits)) % 10) % 10
        return f"See ISBN 978-{digits[3]}-{digits[4:7]}-{digits[7:12]}-{chk} for the full text."
    if kind == 4:
        return f"Order ORD-{rng.randint(2015, 2030)}-{rng.randint(0, 999999):06d} shipped; invoice #{rng.randint(10**5, 10**7)}."
    if kind == 5:
        u = "".join(rng.choice(hexd) for _ in range(32))
        return f"Request id {u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]} failed."
    if kind == 6:
        return f"Commit {''.join(rng.choice(hexd) for _ in range(rng.choice([40, 64])))} fixed it."
    if kind == 7:
        return f"The test card {_card_number(rng, valid=False)} is rejected by the checksum."
    if kind == 8:
        return f"The NIC has MAC {':'.join(f'{rng.randint(0, 255):02X}' for _ in range(6))}."
    if kind == 9:
        return f"The job ran from {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} for an hour."
    if kind == 10:
        return f"Revenue was {rng.randint(1, 999)},{rng.randint(0, 999):03d},{rng.randint(0, 999):03d}.{rng.randint(0, 99):02d} USD."
    if kind == 11:
        return f"Build {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(1000, 30000)}.{rng.randint(1, 999)} is current."
    if kind == 12:
        bits = 0xFFFFFFFF << (32 - rng.randint(8, 30))
        mask = ".".join(str((bits >> shift) & 0xFF) for shift in (24, 16, 8, 0))
        return f"Use netmask {mask}, listen on 127.0.{rng.randint(0, 9)}.1 or on 0.0.0.0 for every interface."
    return f"Part no. {rng.randint(100, 999)}-{rng.randint(1000, 9999)}-{rng.randint(10, 99)} is out of stock."


def _filler() -> list[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return ["The function returns a new object.", "Each item is checked in turn."]
    out = []
    for name in sorted(topics):
        for s in re.split(r"(?<=[.!?])\s+", " ".join(topics[name].split())):
            if 40 <= len(s) <= 200 and not re.search(r"[\d@:\[\]{}]", s):
                out.append(s)
    return out


def generate(n_per_type: int = 80, n_negative_docs: int = 250, seed: int = 0) -> list[LabelledDoc]:
    """Labelled documents: ``n_per_type`` positives of every type (one to three labelled
    sentences per document, amid filler), then documents of hard negatives only."""
    rng = random.Random(f"winnow-pii-{seed}")
    filler = _filler()
    items = [t for t in PII_TYPES for _ in range(n_per_type)]
    rng.shuffle(items)
    docs: list[LabelledDoc] = []
    i = 0
    while i < len(items):
        k = rng.randint(1, 3)
        parts: list[str] = []
        spans: list[Span] = []
        negs = 0
        pos = 0
        for t in items[i:i + k]:
            sents = [rng.choice(filler) for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.5:
                sents.append(_negative(rng))
                negs += 1
            tmpl = rng.choice(_TEMPLATES[t])
            value = _GEN[t](rng)
            before, after = tmpl.split("{}")
            sents.insert(rng.randint(0, len(sents)), "\x00")
            for s in sents:
                if s == "\x00":
                    start = pos + len(before)
                    spans.append(Span(start, start + len(value), t))
                    s = before + value + after
                parts.append(s)
                pos += len(s) + 1
        docs.append(LabelledDoc(" ".join(parts), tuple(spans), negs))
        i += k
    for _ in range(n_negative_docs):
        sents = [rng.choice(filler) for _ in range(rng.randint(0, 2))] + [_negative(rng) for _ in range(rng.randint(1, 3))]
        rng.shuffle(sents)
        docs.append(LabelledDoc(" ".join(sents), (), sum(1 for s in sents if s not in filler)))
    return docs


def evaluate(docs: Sequence[LabelledDoc], detect: Callable[[str], Iterable[Span]] = find_pii
             ) -> dict[str, dict[str, float]]:
    """Per type: gold, predicted, true positives, precision and recall (overlap matching)."""
    out = {t: {"gold": 0, "predicted": 0, "tp_pred": 0, "tp_gold": 0} for t in PII_TYPES}
    for d in docs:
        pred = list(detect(d.text))
        for p in pred:
            c = out.setdefault(p.type, {"gold": 0, "predicted": 0, "tp_pred": 0, "tp_gold": 0})
            c["predicted"] += 1
            if any(g.type == p.type and g.start < p.end and p.start < g.end for g in d.spans):
                c["tp_pred"] += 1
        for g in d.spans:
            out[g.type]["gold"] += 1
            if any(p.type == g.type and g.start < p.end and p.start < g.end for p in pred):
                out[g.type]["tp_gold"] += 1
    for c in out.values():
        c["precision"] = c["tp_pred"] / c["predicted"] if c["predicted"] else 1.0
        c["recall"] = c["tp_gold"] / c["gold"] if c["gold"] else 1.0
    return out


def format_table(result: dict[str, dict[str, float]]) -> str:
    """The per-type figures as a fixed-width table."""
    lines = [f"{'type':<12} {'gold':>5} {'found':>5} {'precision':>9} {'recall':>7}"]
    for t, c in result.items():
        lines.append(f"{t:<12} {c['gold']:>5} {c['predicted']:>5} {c['precision']:>9.3f} {c['recall']:>7.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    docs = generate()
    print(f"{len(docs)} documents, {sum(len(d.spans) for d in docs)} positives, "
          f"{sum(d.negatives for d in docs)} hard negatives")
    print(format_table(evaluate(docs)))
