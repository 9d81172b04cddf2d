"""`spec.async.sink`: checked in the manifest (an http(s) URL, no credentials), resolved onto the Function and carried
to the dispatcher by the route entry, which sends each final result there as a CloudEvent."""

from __future__ import annotations

from typing import Any

import pytest
from lf_core.contract.routes import decode_route, encode_route, route_of
from lf_core.contract.specs import API_VERSION, ManifestError, load_manifest


def _function(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Function", "metadata": {"name": "f"}, "spec": spec}


def test_a_sink_reaches_the_route_entry() -> None:
    fn = load_manifest(_function(**{"async": {"sink": "https://events.example.com/in?src=lf"}}))
    assert fn.async_.sink == "https://events.example.com/in?src=lf"
    assert decode_route(encode_route(route_of(fn))).async_rule.sink == "https://events.example.com/in?src=lf"
    assert load_manifest(_function()).async_.sink == ""


def test_a_private_sink_is_accepted_here_and_checked_at_delivery() -> None:
    """Whether an address may be reached is the dispatcher's LF_CALLBACK_ALLOW_PRIVATE, and a name's addresses
    change: the manifest checks the form only."""
    assert load_manifest(_function(**{"async": {"sink": "http://10.0.0.5:8080/"}})).async_.sink


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ("ftp://events.example.com/", "https?"),
        ("https://user:secret@events.example.com/", "sink URL may not carry credentials"),
        ("https://events.example.com:99999/", "sink URL has a bad port"),
        ("https://events.example.com/a b", "whitespace"),
        ("", "spec.async.sink"),
    ],
)
def test_a_bad_sink_is_refused_naming_the_field(sink: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message) as caught:
        load_manifest(_function(**{"async": {"sink": sink}}))
    assert "sink" in str(caught.value)
