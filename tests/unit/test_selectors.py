"""Label selectors: the Kubernetes grammar parsed, matched, written back, and the
OpenAPI pattern agreeing with the parser."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.errors import Invalid
from armillary.resources import selectors
from armillary.resources.selectors import Requirement as R

GOLD = {"tier": "gold", "team": "a"}
SILVER = {"tier": "silver"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("", ()),
        ("  ", ()),
        ("tier=gold", (R(key="tier", operator="=", values=("gold",)),)),
        ("tier==gold", (R(key="tier", operator="=", values=("gold",)),)),
        ("tier!=gold", (R(key="tier", operator="!=", values=("gold",)),)),
        ("tier=", (R(key="tier", operator="=", values=("",)),)),
        ("tier in (gold,silver)", (R(key="tier", operator="in", values=("gold", "silver")),)),
        (" tier  notin ( gold , b ) ", (R(key="tier", operator="notin", values=("gold", "b")),)),
        ("tier in(gold)", (R(key="tier", operator="in", values=("gold",)),)),
        ("tier", (R(key="tier", operator="exists"),)),
        ("!tier", (R(key="tier", operator="!"),)),
        ("example.com/tier = gold", (R(key="example.com/tier", operator="=", values=("gold",)),)),
        (
            "a=b,!c,d,e in (f)",
            (
                R(key="a", operator="=", values=("b",)),
                R(key="c", operator="!"),
                R(key="d", operator="exists"),
                R(key="e", operator="in", values=("f",)),
            ),
        ),
        ("in in (in)", (R(key="in", operator="in", values=("in",)),)),
    ],
)
def test_parse(text: str, parsed: selectors.Selector) -> None:
    assert selectors.parse(text) == parsed
    assert re.match(selectors.PATTERN, text)


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("tier!gold", 5, "expected '=', '==', '!=', 'in (…)', 'notin (…)', ',' or the end"),
        ("tier gold", 6, "expected '=', '=='"),
        ("tier in gold", 9, "expected '(' after 'in'"),
        ("tier in (gold", 14, "expected ',' or ')', got the end"),
        ("tier in ()", 10, "expected a label value, got ')'"),
        ("a=b,", 5, "expected a label key, got the end"),
        (",a=b", 1, "expected a label key, got ','"),
        ("a=b c", 5, "expected ',' or the end, got 'c'"),
        ("!a=b", 3, "expected ',' or the end, got '='"),
        ("-bad=x", 1, "expected a label key ("),
        ("a=-x", 3, "expected a label value ("),
        ("tierin(a)", 7, "expected '=', '=='"),
        ("a=b=c", 4, "expected ',' or the end, got '='"),
    ],
)
def test_parse_errors_name_the_position_and_what_was_expected(
    text: str, position: int, expected: str
) -> None:
    with pytest.raises(Invalid) as caught:
        selectors.parse(text)
    [issue] = caught.value.issues
    assert issue.path == "selector"
    assert f"at character {position}: {expected}" in issue.message
    assert not re.match(selectors.PATTERN, text)


@pytest.mark.parametrize(
    ("text", "gold", "silver", "bare"),
    [
        ("tier=gold", True, False, False),
        ("tier!=gold", False, True, True),  # absent counts as "not gold", as in Kubernetes
        ("tier in (gold,silver)", True, True, False),
        ("tier notin (gold)", False, True, True),
        ("tier", True, True, False),
        ("!tier", False, False, True),
        ("tier,team=a", True, False, False),
        ("", True, True, True),
    ],
)
def test_matches(text: str, gold: bool, silver: bool, bare: bool) -> None:
    selector = selectors.parse(text)
    assert [selectors.matches(selector, x) for x in (GOLD, SILVER, BARE)] == [gold, silver, bare]


_keys = st.from_regex(r"[a-z]([-a-z0-9.]{0,8}[a-z0-9])?(/[A-Za-z0-9]{1,5})?", fullmatch=True)
_values = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?", fullmatch=True)
_requirements = st.one_of(
    st.builds(R, key=_keys, operator=st.sampled_from(["exists", "!"])),
    st.builds(
        R,
        key=_keys,
        operator=st.sampled_from(["=", "!="]),
        values=st.tuples(st.one_of(st.just(""), _values)),
    ),
    st.builds(
        R,
        key=_keys,
        operator=st.sampled_from(["in", "notin"]),
        values=st.lists(_values, min_size=1, max_size=3).map(tuple),
    ),
)


@given(st.lists(_requirements, max_size=4).map(tuple))
def test_text_parses_back(selector: selectors.Selector) -> None:
    written = selectors.text(selector)
    assert selectors.parse(written) == selector
    assert re.match(selectors.PATTERN, written)


@given(st.from_regex(selectors.PATTERN, fullmatch=True).filter(lambda s: "\n" not in s))
def test_what_the_pattern_accepts_parses(text: str) -> None:
    selectors.parse(text)


@given(st.text(alphabet=" =!,()abinot-/._A9\t", max_size=20))
def test_pattern_and_parser_agree(text: str) -> None:
    try:
        selectors.parse(text)
        parsed = True
    except Invalid:
        parsed = False
    assert parsed == bool(re.match(selectors.PATTERN, text))


_NEGATIONS: dict[str, selectors.Operator] = {"=": "!=", "in": "notin", "exists": "!"}


@given(
    _requirements.filter(lambda r: r.operator in _NEGATIONS),
    st.dictionaries(_keys, _values, max_size=3),
)
def test_each_negated_operator_selects_exactly_the_rest(
    requirement: selectors.Requirement, labels: dict[str, str]
) -> None:
    negated = R(
        key=requirement.key,
        operator=_NEGATIONS[requirement.operator],
        values=requirement.values,
    )
    for chosen in (labels, {**labels, requirement.key: (requirement.values or ("x",))[0]}):
        assert requirement.matches(chosen) != negated.matches(chosen)
