"""lf_core.envsettings.EnvReader: each accepted form, and each refusal naming its variable in the caller's error."""

from __future__ import annotations

import pytest
from lf_core.envsettings import EnvReader, EnvSettingError


class OwnError(ValueError):
    pass


def reader(**env: str) -> EnvReader:
    return EnvReader(env, OwnError)


def test_blank_counts_as_unset_and_text_is_stripped() -> None:
    get = reader(LF_A="  x  ", LF_B="   ")
    assert (get.text("LF_A", "d"), get.text("LF_B", "d"), get.text("LF_C", "d")) == ("x", "d", "d")
    assert (get.integer("LF_B", 7, low=0), get.seconds("LF_B", 1.5), get.boolean("LF_B", True)) == (7, 1.5, True)


@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("42", 42), ("1_000", 1000), (" 65535 ", 65535), ("-3", -3)])
def test_integer_forms(raw: str, value: int) -> None:
    assert reader(LF_N=raw).integer("LF_N", 1, low=-5, high=65535) == value


@pytest.mark.parametrize(
    ("raw", "high", "message"),
    [
        ("lots", 10, "LF_N='lots' is not an integer"),
        ("1.5", 10, "LF_N='1.5' is not an integer"),
        ("11", 10, "LF_N='11' is out of range: must be between 1 and 10"),
        ("0", 10, "LF_N='0' is out of range: must be between 1 and 10"),
        ("0", None, "LF_N='0' is out of range: must be at least 1"),
    ],
)
def test_integer_refusals_name_the_variable(raw: str, high: int | None, message: str) -> None:
    with pytest.raises(OwnError) as caught:
        reader(LF_N=raw).integer("LF_N", 1, low=1, high=high)
    assert str(caught.value) == message


def test_integer_without_a_high_bound_takes_any_large_value() -> None:
    assert reader(LF_N="10_000_000_000").integer("LF_N", 1, low=0) == 10_000_000_000


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("0", 0.0), ("5", 5.0), ("2.5s", 2.5), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("0.5m", 30.0)],
)
def test_seconds_forms(raw: str, seconds: float) -> None:
    assert reader(LF_T=raw).seconds("LF_T", 1.0) == seconds


@pytest.mark.parametrize("raw", ["-1s", "5 s", "1d", ".5s", "1e3", "soon", "5sec"])
def test_seconds_refusals(raw: str) -> None:
    with pytest.raises(OwnError) as caught:
        reader(LF_T=raw).seconds("LF_T", 1.0)
    assert str(caught.value) == f"LF_T={raw!r} is not a duration (e.g. '500ms', '5s', '2m')"


@pytest.mark.parametrize("raw", ["0", "0s", "0ms", "-1s", "soon"])
def test_positive_seconds_refuse_zero_and_malformed_values_with_one_message(raw: str) -> None:
    with pytest.raises(OwnError) as caught:
        reader(LF_T=raw).seconds("LF_T", 1.0, positive=True)
    assert str(caught.value) == f"LF_T={raw!r} is not a positive duration (e.g. '10s', '500ms')"
    assert reader(LF_T="250ms").seconds("LF_T", 1.0, positive=True) == 0.25


@pytest.mark.parametrize(
    ("raw", "value"), [("true", True), ("TRUE", True), ("1", True), ("Yes", True), ("false", False), ("0", False)]
)
def test_boolean_forms(raw: str, value: bool) -> None:
    assert reader(LF_B=raw).boolean("LF_B", not value) is value


def test_boolean_refusal() -> None:
    with pytest.raises(OwnError, match=r"^LF_B='maybe' is not a boolean \(true or false\)$"):
        reader(LF_B="Maybe").boolean("LF_B", False)


def test_choice_is_case_insensitive_and_refusal_lists_the_allowed() -> None:
    allowed = ("debug", "info")
    assert reader(LF_L="DEBUG").choice("LF_L", "info", allowed) == "debug"
    assert reader().choice("LF_L", "info", allowed) == "info"
    with pytest.raises(OwnError, match=r"^LF_L='loud' is not one of debug, info$"):
        reader(LF_L="Loud").choice("LF_L", "info", allowed)


def test_the_default_error_is_a_value_error() -> None:
    with pytest.raises(EnvSettingError, match="LF_N"):
        EnvReader({"LF_N": "x"}).integer("LF_N", 1, low=0)
    assert issubclass(EnvSettingError, ValueError)
