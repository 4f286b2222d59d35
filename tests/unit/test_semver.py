"""Semantic versions: what parses (examples from semver.org) and how versions order."""

from __future__ import annotations

import itertools
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armillary.resources import semver

# https://semver.org/ (2.0.0), the list of valid and invalid strings published with
# the specification's regular expression.
VALID = [
    "0.0.4",
    "1.2.3",
    "10.20.30",
    "1.1.2-prerelease+meta",
    "1.1.2+meta",
    "1.1.2+meta-valid",
    "1.0.0-alpha",
    "1.0.0-beta",
    "1.0.0-alpha.beta",
    "1.0.0-alpha.beta.1",
    "1.0.0-alpha.1",
    "1.0.0-alpha0.valid",
    "1.0.0-alpha.0valid",
    "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay",
    "1.0.0-rc.1+build.1",
    "2.0.0-rc.1+build.123",
    "1.2.3-beta",
    "10.2.3-DEV-SNAPSHOT",
    "1.2.3-SNAPSHOT-123",
    "1.0.0",
    "2.0.0",
    "1.1.7",
    "2.0.0+build.1848",
    "2.0.1-alpha.1227",
    "1.0.0-alpha+beta",
    "1.2.3----RC-SNAPSHOT.12.9.1--.12+788",
    "1.2.3----R-S.12.9.1--.12+meta",
    "1.2.3----RC-SNAPSHOT.12.9.1--.12",
    "1.0.0+0.build.1-rc.10000aaa-kk-0.1",
    "99999999999999999999999.999999999999999999.99999999999999999",
    "1.0.0-0A.is.legal",
]

INVALID = [
    "1",
    "1.2",
    "1.2.3-0123",
    "1.2.3-0123.0123",
    "1.1.2+.123",
    "+invalid",
    "-invalid",
    "-invalid+invalid",
    "-invalid.01",
    "alpha",
    "alpha.beta",
    "alpha.beta.1",
    "alpha.1",
    "alpha+beta",
    "alpha_beta",
    "alpha.",
    "alpha..",
    "beta",
    "1.0.0-alpha_beta",
    "-alpha.",
    "1.0.0-alpha..",
    "1.0.0-alpha..1",
    "1.0.0-alpha...1",
    "01.1.1",
    "1.01.1",
    "1.1.01",
    "1.2.3.DEV",
    "1.2-SNAPSHOT",
    "1.2.31.2.3----RC-SNAPSHOT.12.09.1--..12+788",
    "1.2-RC-SNAPSHOT",
    "-1.0.3-gamma+b7718",
    "+justmeta",
    "9.8.7+meta+meta",
    "9.8.7-whatever+meta+meta",
    "99999999999999999999999.999999999999999999.99999999999999999----RC-SNAPSHOT.12.09.1"
    "--------------------------------..12",
    # and what people type by habit
    "v1.2.3",
    " 1.2.3",
    "1.2.3 ",
    "",
]


@pytest.mark.parametrize("text", VALID)
def test_valid_versions_parse_and_print_back(text: str) -> None:
    assert str(semver.parse(text)) == text


@pytest.mark.parametrize("text", INVALID)
def test_invalid_versions_are_refused_saying_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a semantic version MAJOR\.MINOR\.PATCH"):
        semver.parse(text)


@pytest.mark.parametrize(
    "text", ["1.2.3\n", "1\u0661.0.0"], ids=["trailing-newline", "arabic-digit"]
)
def test_near_misses_that_re_would_accept_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a semantic version"):
        semver.parse(text)


def test_parts() -> None:
    version = semver.parse("1.0.0-rc.1+build.1")

    assert (version.major, version.minor, version.patch) == (1, 0, 0)
    assert version.prerelease == ("rc", "1")
    assert version.build == "build.1"


# semver.org section 11.
PRECEDENCE = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "2.0.0",
    "2.1.0",
    "2.1.1",
]


@pytest.mark.parametrize(("lower", "higher"), list(itertools.pairwise(PRECEDENCE)))
def test_precedence_from_the_specification(lower: str, higher: str) -> None:
    assert semver.parse(lower) < semver.parse(higher)
    assert semver.parse(higher) > semver.parse(lower)


def test_sorting_shuffled_versions_gives_the_specification_order() -> None:
    shuffled = [PRECEDENCE[i] for i in (7, 3, 10, 0, 5, 1, 9, 6, 2, 8, 4)]

    assert [str(v) for v in sorted(map(semver.parse, shuffled))] == PRECEDENCE


def test_build_metadata_does_not_change_precedence() -> None:
    assert semver.parse("1.0.0+a") == semver.parse("1.0.0+b")
    assert hash(semver.parse("1.0.0+a")) == hash(semver.parse("1.0.0"))
    assert not semver.parse("1.0.0+a") < semver.parse("1.0.0+b")


def test_numeric_parts_compare_as_numbers() -> None:
    assert semver.parse("1.9.0") < semver.parse("1.10.0")
    assert semver.parse("1.0.0-9") < semver.parse("1.0.0-10")
    assert semver.parse("1.0.0-10") < semver.parse("1.0.0-9a")  # numeric below alphanumeric


# --- properties -----------------------------------------------------------------------

numbers = st.integers(min_value=0, max_value=10**6)
numeric_id = numbers.map(str)
ID_CHARS = string.ascii_letters + string.digits + "-"
alnum_id = st.text(ID_CHARS, min_size=1, max_size=8).filter(lambda s: not s.isdigit())
identifiers = st.lists(st.one_of(numeric_id, alnum_id), max_size=4)
build = st.lists(st.text(ID_CHARS, min_size=1, max_size=6), max_size=3)


@st.composite
def version_texts(draw: st.DrawFn) -> str:
    text = f"{draw(numbers)}.{draw(numbers)}.{draw(numbers)}"
    pre = draw(identifiers)
    if pre:
        text += "-" + ".".join(pre)
    meta = draw(build)
    if meta:
        text += "+" + ".".join(meta)
    return text


def reference_key(text: str) -> tuple[object, ...]:
    """Precedence written straight from semver.org section 11, independently of semver.py."""
    core, _, pre = text.partition("+")[0].partition("-")
    major, minor, patch = (int(n) for n in core.split("."))
    if not pre:
        return (major, minor, patch, 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (major, minor, patch, 0, ids)


@settings(max_examples=300)
@given(version_texts())
def test_str_round_trips(text: str) -> None:
    version = semver.parse(text)

    assert str(version) == text
    assert semver.parse(str(version)) == version


@settings(max_examples=100)
@given(st.lists(version_texts(), max_size=12))
def test_sorting_agrees_with_the_specification_and_survives_str(texts: list[str]) -> None:
    versions = [semver.parse(t) for t in texts]

    by_version = [reference_key(str(v)) for v in sorted(versions)]
    assert by_version == sorted(reference_key(t) for t in texts)
    reparsed = sorted(semver.parse(str(v)) for v in versions)
    assert [reference_key(str(v)) for v in reparsed] == by_version


@settings(max_examples=200)
@given(version_texts(), version_texts())
def test_comparison_matches_the_specification(first: str, second: str) -> None:
    a, b = semver.parse(first), semver.parse(second)

    assert (a < b) == (reference_key(first) < reference_key(second))
    assert (a == b) == (reference_key(first) == reference_key(second))
