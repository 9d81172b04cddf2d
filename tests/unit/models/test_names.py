"""Names become NATS subjects, so anything but a DNS-1123 label is refused with a reason."""

from __future__ import annotations

import pytest
from lf_core.contract.names import InvalidName, check_name, is_valid_name
from lf_core.contract.subjects import function_route_key, invoke_subject, queue_group


@pytest.mark.parametrize("name", ["a", "hello", "my-func-2", "0abc", "a" * 63])
def test_labels_are_accepted(name: str) -> None:
    assert check_name(name) == name
    assert is_valid_name(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("a" * 64, "64 characters"),
        ("Hello", "DNS-1123"),
        ("-lead", "DNS-1123"),
        ("trail-", "DNS-1123"),
        ("a.b", "DNS-1123"),
        ("a*", "DNS-1123"),
        ("a>", "DNS-1123"),
        ("..", "DNS-1123"),
        ("a b", "DNS-1123"),
        ("a/b", "DNS-1123"),
        ("é", "DNS-1123"),
    ],
)
def test_everything_else_is_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(InvalidName, match=reason):
        check_name(name)
    assert not is_valid_name(name)


def test_subjects_are_built_from_checked_names() -> None:
    assert invoke_subject("default", "hello") == "lf.invoke.default.hello"
    assert queue_group("team-a", "hello") == "team-a.hello"
    assert function_route_key("default", "hello") == "fn.default.hello"
    with pytest.raises(InvalidName, match="namespace"):
        invoke_subject("a.>", "hello")
    with pytest.raises(InvalidName):
        invoke_subject("default", "*")
