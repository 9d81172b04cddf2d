"""The subject and stream confinement of NATS Triggers (lf_core.contract.confinement): a Trigger of namespace NS
may use subjects under ev.NS.> and streams named EV_NS or EV_NS_<suffix>, nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from lf_core.contract.confinement import nats_trigger_error, stream_error, subject_error
from lf_core.contract.specs import API_VERSION, ManifestError, load_trigger

ALLOWED = ["ev.shop.orders", "ev.shop.>", "ev.shop.*", "ev.shop.orders.*.created", "ev.shop.a.>"]

REFUSED = {
    "lf.invoke.>": "lf.> carries the platform's own calls",
    "lf.invoke.other.fn": "lf.> carries",
    "lf.>": "lf.> carries",
    "lf.async.shop.fn.*": "lf.> carries",
    "_INBOX.>": "_INBOX.> carries replies",
    "$JS.API.>": "$JS.> is JetStream's API",
    "$KV.LF_ROUTES.>": "$KV.> holds",
    "$SYS.>": "$SYS.> is the broker's system account",
    ">": "reaches every namespace",
    "*.shop.>": "reaches every namespace",
    "ev.>": "must name a subject under ev.shop.>",
    "ev.*.orders": "reaches other namespaces' events",
    "ev.>.x": "'>' other than as a whole last token",
    "ev.other.>": "belongs to namespace 'other'",
    "ev.shop-2.orders": "belongs to namespace 'shop-2'",
    "ev.shop": "must name a subject under ev.shop.>",
    "orders.new": "outside ev.shop.>",
    "ev.shop.or*": "'*' other than as a whole token",
    "ev.shop..x": "empty token",
    "ev.shop.a b": "white space",
    "": "1 to 255 characters",
}


@pytest.mark.parametrize("subject", ALLOWED)
def test_subjects_under_the_namespace_are_allowed(subject: str) -> None:
    assert subject_error("shop", subject) is None


@pytest.mark.parametrize(("subject", "why"), REFUSED.items(), ids=[s or "empty" for s in REFUSED])
def test_everything_else_is_refused_naming_the_rule(subject: str, why: str) -> None:
    message = subject_error("shop", subject)
    assert message is not None
    assert why in message
    assert "may only use subjects under ev.shop.>" in message


@pytest.mark.parametrize("stream", ["EV_shop", "EV_shop_orders", "EV_shop_a_b"])
def test_streams_the_namespace_owns_are_allowed(stream: str) -> None:
    assert stream_error("shop", stream) is None


@pytest.mark.parametrize(
    ("stream", "why"),
    [
        ("LF_ASYNC", "not a namespace's event stream"),
        ("KV_LF_ROUTES", "not a namespace's event stream"),
        ("EV_other", "belongs to namespace 'other'"),
        ("EV_shop-2_x", "belongs to namespace 'shop-2'"),  # a longer namespace is another owner
        ("EV__shop", "belongs to namespace ''"),
        ("EV_shop.x", "not a stream name"),
        ("ev_shop", "not a namespace's event stream"),
    ],
)
def test_other_streams_are_refused(stream: str, why: str) -> None:
    message = stream_error("shop", stream)
    assert message is not None and why in message


def test_a_namespace_prefix_does_not_own_a_longer_namespaces_stream() -> None:
    # namespaces are DNS labels (no '_'), so EV_a-b_x is a-b's alone
    assert stream_error("a", "EV_a-b_x") is not None
    assert stream_error("a-b", "EV_a-b_x") is None


def test_both_are_checked() -> None:
    assert nats_trigger_error("shop", "ev.shop.x", "EV_shop") is None
    assert "belongs to namespace 'other'" in (nats_trigger_error("shop", "ev.shop.x", "EV_other") or "")
    assert "lf.> carries" in (nats_trigger_error("shop", "lf.invoke.>", "EV_shop") or "")


def _trigger(namespace: str, **nats: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Trigger",
        "metadata": {"name": "t", "namespace": namespace},
        "spec": {"function": "f", "nats": nats},
    }


def test_a_trigger_manifest_is_refused_with_the_rule() -> None:
    with pytest.raises(ManifestError, match=r"t.yaml: spec.nats.subject: 'lf.invoke.>' is refused .*ev.shop.>"):
        load_trigger(_trigger("shop", subject="lf.invoke.>"), source="t.yaml")
    with pytest.raises(ManifestError, match="spec.nats.stream: 'EV_other' belongs to namespace 'other'"):
        load_trigger(_trigger("shop", subject="ev.shop.x", stream="EV_other"))
    assert load_trigger(_trigger("shop", subject="ev.shop.x", stream="EV_shop")).nats is not None
