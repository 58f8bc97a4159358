"""The baseline DLP detectors one by one (what each finds, what it leaves alone), and how find_all merges them.

All values are documentation fakes: test card numbers, example.com, the documentation IP ranges,
AWS's published example key.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import time
from collections.abc import Iterator
from itertools import pairwise

import pytest

from bastion.pipeline.dlp_detectors import (
    BASELINE,
    MARK,
    AnyOf,
    Detector,
    Finding,
    RegexDetector,
    find_all,
    iban_valid,
    luhn_valid,
)
from bench.dlp_corpus import CORPUS

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
GITHUB_TOKEN = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
RANDOM_TOKEN = "q8Xz3Lm0Pv7Rt2Kw9Yb4Nc6Hd1Jf5Gs0"


def found(text: str) -> list[tuple[str, str]]:
    return [(f.detector, f.value) for f in find_all(text, BASELINE)]


def test_the_baseline_has_one_detector_per_agreed_name() -> None:
    assert [d.name for d in BASELINE] == [
        "private_key", "jwt", "api_token", "aws_access_key", "email", "iban", "payment_card", "us_ssn",
        "national_id", "ip_address", "phone", "high_entropy",
    ]  # fmt: skip


@pytest.mark.parametrize("number", ["4111111111111111", "4111 1111 1111 1111", "3782-822463-10005", "6011000990139424"])
def test_luhn_valid_accepts_test_card_numbers_with_or_without_separators(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4111111111111112", "4111 1111 1111 111x", "", "\uff14" + "\uff11" * 15])
def test_luhn_valid_rejects_a_changed_digit_letters_nothing_and_non_ascii_digits(number: str) -> None:
    assert not luhn_valid(number)


@pytest.mark.parametrize(
    "iban", ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "NL91ABNA0417164300", "NO9386011117947"]
)
def test_iban_valid_accepts_documented_examples_spaced_or_compact(iban: str) -> None:
    assert iban_valid(iban)


@pytest.mark.parametrize(
    "iban",
    [
        "GB83 WEST 1234 5698 7654 32",  # check digits off by one
        "DE89 3704 0044 0532 0130 0",  # one character short for Germany
        "XX82 WEST 1234 5698 7654 32",  # no such country
        "GB82 WEST 1234 5698 7654 3!",
    ],
)
def test_iban_valid_rejects_wrong_check_digits_wrong_lengths_and_unknown_countries(iban: str) -> None:
    assert not iban_valid(iban)


@pytest.mark.parametrize(
    ("detector", "text", "value"),
    [
        ("email", "write to alice.smith+news@mail.example.org today", "alice.smith+news@mail.example.org"),
        ("phone", "call +1 (415) 555-0132 now", "+1 (415) 555-0132"),
        ("phone", "London 020 7946 0958.", "020 7946 0958"),
        ("phone", "Paris 01 23 45 67 89", "01 23 45 67 89"),
        ("payment_card", "card 4111-1111-1111-1111 on file", "4111-1111-1111-1111"),
        ("payment_card", "amex 3782 822463 10005", "3782 822463 10005"),
        ("iban", "pay GB82 WEST 1234 5698 7654 32 now", "GB82 WEST 1234 5698 7654 32"),
        ("us_ssn", "SSN 536-22-8146.", "536-22-8146"),
        ("national_id", "NI number AB 12 34 56 C", "AB 12 34 56 C"),
        ("national_id", "DNI 12345678Z", "12345678Z"),
        ("national_id", "NIE X1234567L", "X1234567L"),
        ("national_id", "NIR 1 84 12 76 451 089 46", "1 84 12 76 451 089 46"),
        ("ip_address", "from 192.0.2.1:8080", "192.0.2.1"),
        ("ip_address", "peer [2001:db8::8a2e:370:7334]:443", "2001:db8::8a2e:370:7334"),
        ("aws_access_key", "aws_access_key_id=AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        ("jwt", f"Authorization: Bearer {JWT}", JWT),
        ("api_token", f"token {GITHUB_TOKEN}.", GITHUB_TOKEN),
        ("api_token", "key=AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q&x=1", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
        ("high_entropy", f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    ],
)
def test_each_detector_reports_its_value_and_where_it_is(detector: str, text: str, value: str) -> None:
    findings = find_all(text, BASELINE)
    assert [(f.detector, f.value) for f in findings] == [(detector, value)]
    assert text[findings[0].start : findings[0].end] == value


def test_a_jwt_lookalike_with_a_deeply_nested_header_is_rejected_not_raised() -> None:
    header = base64.urlsafe_b64encode(b'{"a":' + b"[" * 1500 + b"]" * 1500 + b"}").decode().rstrip("=")
    assert found(f"{header}.eyJzdWIiOiIxIn0.abc") == []


def test_a_private_key_is_reported_as_the_whole_block_and_a_truncated_one_still_counts() -> None:
    block = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aumaVHAbfDlgBbE3FJ\n"
        "-----END RSA PRIVATE KEY-----"
    )
    assert found(f"key:\n{block}\nthanks") == [("private_key", block)]
    truncated = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB"
    assert found(truncated) == [("private_key", truncated)]


@pytest.mark.parametrize(
    "text",
    [
        "shipped 2.10.4 on 2024-01-15, order ORD-2024-0001234 for $1,234.56",
        "Python 3.11.7, ISBN 978-3-16-148410-0, zip 94105-1234, 37.7749, -122.4194",
        "order number 4155550132 and ticket #100234567",
        "card 4111 1111 1111 1112 fails Luhn; IMEI 490154203237518 is no card",
        "IBAN GB83 WEST 1234 5698 7654 32 has bad check digits",
        "SSN 000-12-3456, 666-12-3456, 912-70-1234, 123-00-4567, 123-45-0000",
        "DNI 12345678A has the wrong letter; NI GB123456A and QQ123456C are never issued",
        "256.1.1.1, 1.2.3.4.5, 12:30:45, 00:1A:2B:3C:4D:5E, std::vector, dead::beef",
        "AKIAIOSFODNN7EXAMPL, akiaiosfodnn7example, AIDAJQABLZS4A3QDU576Q",
        "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----",
        "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.abc123 has no alg; eyJust.some.words",
        "icon@2x.png, @dataclass, user@localhost, npm i @types/node",
        "ghp_tooshort, sk_live_123, sk-this-is-not-a-real-key-just-some-words-here",
    ],
)
def test_look_alikes_are_not_findings(text: str) -> None:
    assert found(text) == []


def test_a_card_followed_by_its_expiry_is_cut_back_to_the_card_number() -> None:
    assert found("Visa 4111 1111 1111 1111 12/26 cvv 123") == [("payment_card", "4111 1111 1111 1111")]


def test_an_iban_followed_by_a_currency_is_cut_back_and_two_adjacent_ibans_are_both_found() -> None:
    assert found("IBAN ES91 2100 0418 4502 0005 1332 EUR") == [("iban", "ES91 2100 0418 4502 0005 1332")]
    assert found("ES91 2100 0418 4502 0005 1332 GB82 WEST 1234 5698 7654 32") == [
        ("iban", "ES91 2100 0418 4502 0005 1332"),
        ("iban", "GB82 WEST 1234 5698 7654 32"),
    ]


def test_credentials_in_a_url_are_not_an_email_address() -> None:
    assert found(f"git clone https://{GITHUB_TOKEN}@github.example.com/org/repo.git") == [("api_token", GITHUB_TOKEN)]
    assert found("proxy http://alice:s3cret@proxy.example.com:3128") == []


def test_a_git_sha_uuid_identifier_or_path_is_not_high_entropy() -> None:
    text = (
        "commit da39a3ee5e6b4b0d3255bfef95601890afd80709 request 550e8400-e29b-41d4-a716-446655440000 "
        "class AbstractSingletonProxyFactoryBean2Impl def test_user_can_log_in_with_valid_credentials_2 "
        "/var/lib/docker/overlay2/3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e/merged "
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789"
    )
    assert found(text) == []


def test_a_token_inside_a_url_path_is_reported_alone() -> None:
    assert found(f"https://example.com/reset/{RANDOM_TOKEN}/confirm") == [("high_entropy", RANDOM_TOKEN)]


def test_certificates_and_ssh_public_keys_are_not_high_entropy() -> None:
    body = "\n".join([RANDOM_TOKEN * 2] * 3)
    assert found(f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----") == []
    assert found(f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{RANDOM_TOKEN} deploy@ci") == []


def test_a_secret_a_specific_detector_claims_is_not_also_high_entropy() -> None:
    assert found(f"{JWT} {GITHUB_TOKEN}") == [("jwt", JWT), ("api_token", GITHUB_TOKEN)]


def test_find_all_returns_disjoint_spans_sorted_by_start() -> None:
    text = f"alice@example.com +1 415 555 0132 4111 1111 1111 1111 192.0.2.1 {AWS_SECRET} 536-22-8146"
    findings = find_all(text, BASELINE)
    assert [f.detector for f in findings] == ["email", "phone", "payment_card", "ip_address", "high_entropy", "us_ssn"]
    assert all(a.end <= b.start for a, b in pairwise(findings))


def test_find_all_keeps_the_longest_of_overlapping_findings_whatever_the_order() -> None:
    short = RegexDetector("short", re.compile(r"555"))
    long = RegexDetector("long", re.compile(r"\d{3}-\d{3}-\d{4}"))
    for detectors in ([short, long], [long, short]):
        assert [(f.detector, f.value) for f in find_all("call 415-555-0132", detectors)] == [("long", "415-555-0132")]


def test_find_all_gives_equal_spans_to_the_detector_listed_first() -> None:
    a, b = RegexDetector("a", re.compile(r"x+")), RegexDetector("b", re.compile(r"x+"))
    assert [f.detector for f in find_all("xx", [a, b])] == ["a"]
    assert [f.detector for f in find_all("xx", [b, a])] == ["b"]


def test_replacing_findings_right_to_left_redacts_every_value() -> None:
    text = "mail bob@example.com, card 5555 5555 5555 4444, key AKIAIOSFODNN7EXAMPLE, ip 2001:db8::1."
    redacted = text
    for finding in reversed(find_all(text, BASELINE)):
        redacted = redacted[: finding.start] + f"[{finding.detector}]" + redacted[finding.end :]
    assert redacted == "mail [email], card [payment_card], key [aws_access_key], ip [ip_address]."


def test_a_regex_detector_without_a_validator_reports_every_match() -> None:
    employee = RegexDetector("employee_id", re.compile(r"EMP-\d{6}"))
    assert list(employee.find("EMP-000123 and EMP-000456")) == [
        Finding("employee_id", 0, 10, "EMP-000123"),
        Finding("employee_id", 15, 25, "EMP-000456"),
    ]


def test_a_regex_detector_reports_only_its_group_and_skips_matches_without_it() -> None:
    detector = RegexDetector("order", re.compile(r"order (\d+)|invoice"), group=1)
    assert list(detector.find("invoice, order 42")) == [Finding("order", 15, 17, "42")]


def test_a_pattern_that_can_match_nothing_terminates_without_findings() -> None:
    assert list(RegexDetector("empty", re.compile(r"x*")).find("abc")) == []


def test_a_failing_precheck_skips_the_pattern() -> None:
    detector = RegexDetector("digits", re.compile(r"\d+"), precheck=lambda text: False)
    assert list(detector.find("123")) == []


class _EmployeeId:
    """A plugin-style detector: a plain class with a name and a find method."""

    name = "employee_id"

    def find(self, text: str) -> Iterator[Finding]:
        at = text.find("E-")
        if at >= 0:
            yield Finding(self.name, at, at + 6, text[at : at + 6])


def test_any_object_with_a_name_and_find_is_a_detector() -> None:
    plugin: Detector = _EmployeeId()
    assert [(f.detector, f.value) for f in find_all("id E-1234 of bob@example.com", [*BASELINE, plugin])] == [
        ("employee_id", "E-1234"),
        ("email", "bob@example.com"),
    ]


@pytest.mark.parametrize(
    "hostile",
    [
        "a" * 50_000 + "@" + "b." * 25_000,
        "4 " * 50_000,
        "+1 " * 33_000,
        "1:" * 50_000,
        "Ab1" * 33_000 + "===",
        "eyJa." * 20_000,
        "-----BEGIN PRIVATE KEY-----" * 3_700,
        "-----BEGIN CERTIFICATE-----" + RANDOM_TOKEN * 3_000,
        "DE89 " * 20_000,
        "xoxb-" + "1-" * 50_000,
    ],
)
def test_hostile_inputs_take_linear_time(hostile: str) -> None:
    # 100 KB each, built to make the patterns work hardest: 0.4 s at worst on a busy two-core
    # machine (about 0.05 s for 100 KB of ordinary text); a backtracking blow-up would take minutes.
    started = time.perf_counter()
    find_all(hostile, BASELINE)
    assert time.perf_counter() - started < 3.0


def _unscreened(detector: Detector) -> Detector:
    """The same detector with the `needs_mark` screen off (its parts too)."""
    if isinstance(detector, RegexDetector):
        return dataclasses.replace(detector, needs_mark=False)
    if isinstance(detector, AnyOf):
        return AnyOf(detector.name, tuple(_unscreened(part) for part in detector.parts))
    return detector


def test_the_mark_screen_never_changes_what_the_baseline_finds() -> None:
    # Every labelled corpus line (positives and look-alikes of every detector), plus each detector's
    # samples, with Unicode digits and an address whose only mark is "::".
    texts = [json.loads(raw)["text"] for raw in CORPUS.read_text(encoding="utf-8").splitlines()]
    texts += ["call \u0661\u0662\u0663-\u0664\u0665\u0666-\u0667\u0668\u0669\u0660", "peer ::1 and fe80::", "hello"]
    unscreened = tuple(_unscreened(d) for d in BASELINE)
    screened = [d.name for d in BASELINE if getattr(d, "needs_mark", False)]
    assert screened == ["email", "iban", "payment_card", "us_ssn", "national_id", "ip_address", "phone"]
    for text in texts:
        assert find_all(text, BASELINE) == find_all(text, unscreened), text
        if MARK.search(text) is None:  # what the screen skips finds nothing there
            assert not [f for f in find_all(text, unscreened) if f.detector in screened], text


def test_a_detector_that_needs_a_mark_is_skipped_for_text_without_one() -> None:
    digits = RegexDetector("word", re.compile(r"[a-z]+"), needs_mark=True)
    assert find_all("hello", [digits]) == []
    assert [f.value for f in find_all("hello 1", [digits])] == ["hello"]
