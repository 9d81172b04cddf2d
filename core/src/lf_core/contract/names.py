"""Function and namespace names: DNS-1123 labels, checked before any NATS subject is built from them."""

from __future__ import annotations

import re

DEFAULT_NAMESPACE = "default"
MAX_NAME_LENGTH = 63

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


class InvalidName(ValueError):  # noqa: N818 (named like lf_native's RouteNotFound)
    """A name that is not a DNS-1123 label."""


def check_name(name: str, what: str = "function name") -> str:
    """Return `name` unchanged if it is a DNS-1123 label, else raise InvalidName saying why.

    Args:
        name: the candidate.
        what: what the name names, for the message ("function name", "namespace").
    """
    if not name:
        raise InvalidName(f"{what} is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"{what} is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    if not _LABEL.fullmatch(name):
        raise InvalidName(
            f"{what} {name[:80]!r} is not a DNS-1123 label "
            "(lowercase letters, digits and '-', starting and ending with a letter or digit)"
        )
    return name


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _LABEL.fullmatch(name) is not None
