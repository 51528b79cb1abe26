"""Detectors of personal data and secrets: a candidate regex, then a validity check.

Each detector finds ``(start, end, type)`` spans. Checks keep precision up: Luhn and issuer
prefixes for payment cards, the ISO 13616 length table and mod-97 checksum for IBANs,
phonenumbers' numbering plans for phones, the ``ipaddress`` module for IPs, the SSA's
never-issued ranges for US SSNs. :func:`find_pii` runs them in priority order and drops a span
that overlaps one found earlier (a card number is not also a phone number).

Known limits (by design, for precision): phone numbers need either a leading ``+country``, a
parenthesised area code or two separators (``415-555-2671``), and national formats are read for ``default_region`` only (US by default); bare
runs of digits are never phones. IPv6 addresses need at least two written groups (``::1`` is
not reported). Four dotted numbers of at most 255 are reported as IPv4 unless a letter or
dot is glued to them (``v1.2.3.4`` is a version), or they are a netmask (``255.255.255.0``,
``0.0.0.0``) or a loopback address (``127.0.0.1``), which identify no one.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Callable, Iterable, NamedTuple

__all__ = ["PII_TYPES", "Span", "luhn_ok", "iban_ok", "find_pii", "DETECTORS"]

#: Every type the built-in detectors report, in priority order.
PII_TYPES: tuple[str, ...] = ("secret", "email", "iban", "credit_card", "us_ssn", "ipv6", "ipv4", "phone")


class Span(NamedTuple):
    start: int
    end: int
    type: str


# -- secrets -------------------------------------------------------------------------------------

# Each pattern with the literals one of which it cannot match without, and whether they are
# looked for in the lower-cased text (the two case-insensitive patterns; made once, if needed):
# a substring test per literal (a C scan) decides whether the regex runs at all.
_AWS_ID_PREFIXES = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA")
_GITHUB_PREFIXES = tuple(f"gh{c}_" for c in "pousr")
_SECRET_PATTERNS: list[tuple[tuple[str, ...], bool, re.Pattern[str]]] = [
    (("PRIVATE KEY",), False,
     re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
                re.S)),
    (_AWS_ID_PREFIXES, False,
     re.compile(rf"(?<![A-Za-z0-9])(?:{'|'.join(_AWS_ID_PREFIXES)})[A-Z0-9]{{16}}(?![A-Za-z0-9])")),
    (("secret",), True,
     re.compile(r"(?i:aws_?secret_?access_?key|aws_?secret|secret_?access_?key)[\"']?\s*[:=]\s*[\"']?"
                r"(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])")),
    (("AIza",), False, re.compile(r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])")),
    (("bearer",), True, re.compile(r"(?i:\bbearer)\s+(?P<v>[A-Za-z0-9._~+/-]{20,}=*)")),
    (_GITHUB_PREFIXES, False, re.compile(r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36}(?![A-Za-z0-9_])")),
    (("xox",), False, re.compile(r"(?<![A-Za-z0-9_])xox[abprs]-[A-Za-z0-9-]{10,}")),
]


def _secrets(text: str) -> Iterable[Span]:
    low = None
    for hints, lowered, pat in _SECRET_PATTERNS:
        if lowered and low is None:
            low = text.lower()
        where = low if lowered else text
        for h in hints:  # (a loop: cheaper than any() over a generator, on every text)
            if h in where:
                break
        else:
            continue
        for m in pat.finditer(text):
            s, e = (m.span("v") if "v" in pat.groupindex else m.span())
            yield Span(s, e, "secret")


# -- e-mail --------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)


def _emails(text: str) -> Iterable[Span]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        yield Span(m.start(), m.end(), "email")


# -- IBAN ----------------------------------------------------------------------------------------

#: ISO 13616 IBAN lengths by country (the SEPA area and other common ones).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}
# (The lookbehind comes after the first letter, so the regex engine can skip to capitals fast.)
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")


def iban_ok(iban: str) -> bool:
    """ISO 13616: known country, its length, and the mod-97 checksum equals 1."""
    s = iban.replace(" ", "").upper()
    if IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    digits = "".join(str(int(ch, 36)) for ch in s[4:] + s[:4])
    return int(digits) % 97 == 1


def _ibans(text: str) -> Iterable[Span]:
    for m in _IBAN.finditer(text):
        cand = m.group()
        for _ in range(3):  # a following capitalised word may have been read as a last group
            if iban_ok(cand):
                yield Span(m.start(), m.start() + len(cand), "iban")
                break
            if " " not in cand:
                break
            cand = cand.rsplit(" ", 1)[0]


# -- payment cards -------------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w.+-])\d(?:[ -]?\d){11,18}(?![\w-]|\.\d)")
_CARD_PREFIX = re.compile(
    r"4|5[1-5]|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|3(?:0[0-5]|[689])|6(?:011|5|4[4-9]|2)|35(?:2[89]|[3-8])"
)


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _cards(text: str) -> Iterable[Span]:
    for m in _CARD.finditer(text):
        raw = m.group()
        digits = raw.replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn_ok(digits):
            seps = set(re.findall(r"[ -]", raw))
            if len(seps) <= 1:  # one kind of separator (or none), as cards are written
                yield Span(m.start(), m.end(), "credit_card")


# -- US SSN --------------------------------------------------------------------------------------

_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")


def _ssns(text: str) -> Iterable[Span]:
    for m in _SSN.finditer(text):
        yield Span(m.start(), m.end(), "us_ssn")


# -- IP addresses --------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}(?:\d{1,3}(?:\.\d{1,3}){3})?(?![\w:])")


_IPV4_HINT = re.compile(r"\d\.\d{1,3}\.\d")


def _names_no_host(addr: str) -> bool:
    """A netmask (255.255.255.0: ones then zeros, 0.0.0.0 and 255.255.255.255 included) or a
    loopback address (127.0.0.0/8): configuration, not anyone's address."""
    a, b, c, d = map(int, addr.split("."))
    v = (a << 24) | (b << 16) | (c << 8) | d
    inv = ~v & 0xFFFFFFFF
    return a == 127 or inv & (inv + 1) == 0


def _ipv4s(text: str) -> Iterable[Span]:
    if _IPV4_HINT.search(text) is None:
        return
    for m in _IPV4.finditer(text):
        if not _names_no_host(m.group()):
            yield Span(m.start(), m.end(), "ipv4")


def _ipv6s(text: str) -> Iterable[Span]:
    if "::" not in text and text.count(":") < 7:
        return
    for m in _IPV6.finditer(text):
        cand = m.group()
        groups = [g for g in cand.split(":") if g]
        if len(groups) < 2:
            continue
        try:
            ipaddress.IPv6Address(cand)
        except ValueError:
            continue
        yield Span(m.start(), m.end(), "ipv6")


# -- phone numbers -------------------------------------------------------------------------------

_PHONE = re.compile(
    r"(?<![\w+\-/.#])(?:\+\d[\d .()-]{5,22}\d"
    r"|\(\d{2,5}\)[ .-]?\d{1,5}(?:[ .-]\d{1,5}){1,4}"
    r"|\d{2,5}(?:[ .-]\d{1,5}){2,5})(?![\w\-/]|\.\d)"
)


@lru_cache(maxsize=16)
def _phone_fn(region: str) -> Callable[[str], Iterable[Span]]:
    import phonenumbers

    def phones(text: str) -> Iterable[Span]:
        for m in _PHONE.finditer(text):
            cand = m.group()
            n_digits = sum(ch.isdigit() for ch in cand)
            if not 7 <= n_digits <= 15:
                continue
            try:
                num = phonenumbers.parse(cand, None if cand.startswith("+") else region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(num):
                yield Span(m.start(), m.end(), "phone")

    return phones


DETECTORS: dict[str, Callable[[str], Iterable[Span]]] = {
    "secret": _secrets, "email": _emails, "iban": _ibans, "credit_card": _cards, "us_ssn": _ssns,
    "ipv6": _ipv6s, "ipv4": _ipv4s,
}


# Cards (13+ digits), SSNs (9) and phone numbers (7+) all hold seven digits with at most two
# separator characters between neighbours; one scan for that skips three detectors on most text.
_DIGITS7 = re.compile(r"\d(?:[ .()\-]{0,2}\d){6}")
_NEEDS_7_DIGITS = frozenset({"credit_card", "us_ssn", "phone"})


def find_pii(text: str, types: Iterable[str] = PII_TYPES, phone_region: str = "US") -> list[Span]:
    """Non-overlapping spans of the given types, sorted by start (earlier types win overlaps)."""
    found: list[Span] = []
    numeric: bool | None = None
    for t in PII_TYPES:
        if t not in types:
            continue
        if t in _NEEDS_7_DIGITS:
            if numeric is None:
                numeric = _DIGITS7.search(text) is not None
            if not numeric:
                continue
        fn = DETECTORS.get(t) or _phone_fn(phone_region)
        for sp in fn(text):
            if not any(sp.start < f.end and f.start < sp.end for f in found):
                found.append(sp)
    found.sort()
    return found
