"""Issue 14, item 2: the platform's paths belong to the platform, and a host (or an any-host path prefix) to the
namespace whose Trigger claimed it first. The pure rules (lf_core.contract.paths, lf_core.contract.routes), the
manifest check, the ingestor's table (its defence in depth) and the operator's status of a refused Trigger."""

from __future__ import annotations

from typing import Any

import pytest
from lf_controlplane.operator import status
from lf_core.contract.paths import RESERVED_SEGMENTS, has_dot_segment, reserved_path_error
from lf_core.contract.routes import FunctionRoute, HttpTriggerRoute, claim_conflict, conflict_message, displaced_by
from lf_core.contract.specs import API_VERSION, ManifestError, load_trigger
from lf_dataplane.calls.routetable import Defaults, Entry, build_table
from lf_native import RouteNotFound, RoutingTable

DEFAULTS = Defaults()


def tr(namespace: str, name: str, path: str = "/", host: str = "", created: str = "") -> HttpTriggerRoute:
    return HttpTriggerRoute(namespace=namespace, name=name, function="fn", path=path, host=host, created=created)


def fn(namespace: str) -> FunctionRoute:
    return FunctionRoute(namespace=namespace, name="fn", timeout_ms=1000, max_request_bytes=10, max_response_bytes=10)


# -- reserved paths ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("segment", RESERVED_SEGMENTS)
def test_every_reserved_prefix_is_refused_in_the_manifest_and_by_the_native_table(segment: str) -> None:
    for path in (f"/{segment}", f"/{segment}/{{*rest}}", f"/{segment}/x/{{id}}"):
        manifest = {
            "apiVersion": API_VERSION, "kind": "Trigger", "metadata": {"name": "grab", "namespace": "b"},
            "spec": {"function": "fn", "http": {"path": path}},
        }  # fmt: skip
        with pytest.raises(ManifestError, match=r"spec\.http\.path: .* belongs to the platform"):
            load_trigger(manifest)
        with pytest.raises(ValueError, match="reserved path"):  # the same list in routing.rs
            RoutingTable.build([], [("*", "", path, 0)])


def test_near_misses_are_not_reserved() -> None:
    for path in ("/functions", "/apis/{x}", "/x/invocations", "/", "/{*rest}", "/healthzz"):
        assert reserved_path_error(path) is None, path
        RoutingTable.build([], [("*", "", path, 0)])


def test_dot_segments() -> None:
    assert all(has_dot_segment(p) for p in ("/..", "/a/../b", "/a/.", "/./a"))
    assert not any(has_dot_segment(p) for p in ("/a..b", "/.hidden", "/v1.2/x", "/...", "/"))


def test_the_table_skips_reserved_trigger_entries_and_catch_alls_do_not_capture_the_platform() -> None:
    entries: list[Entry] = [fn("a"), fn("b"), tr("b", "ids", "/invocations/{id}"), tr("b", "all", "/{*rest}")]
    table = build_table(entries, DEFAULTS)
    assert table.lookup("GET", "", "/elsewhere")[0].namespace == "b"
    for path in ("/invocations/abc", "/async-function/fn.a", "/function/nope", "/api/x", "/metrics"):
        with pytest.raises(RouteNotFound):
            table.lookup("POST", "", path)
    assert table.lookup("GET", "", "/function/fn.a")[0].namespace == "a"


# -- claims --------------------------------------------------------------------------------------------------------


def test_a_host_belongs_to_the_first_namespace_whatever_the_path() -> None:
    owner = tr("a", "site", "/shop/{*rest}", host="shop.example.com", created="2026-01-01T00:00:00Z")
    late = tr("b", "grab", "/other", host="Shop.Example.com.", created="2026-01-02T00:00:00Z")
    assert claim_conflict(late, [owner]) == owner
    assert claim_conflict(owner, [late]) is None  # the older claim wins, whichever is written first
    assert displaced_by(owner, [late]) == [late]
    assert claim_conflict(tr("a", "more", "/other", host="shop.example.com", created="3"), [owner]) is None
    message = conflict_message(late, owner)
    assert "namespace 'a'" in message and "'site'" in message and "Shop.Example.com." in message


def test_wildcards_claim_every_host_under_them_both_ways() -> None:
    wild = tr("a", "wild", host="*.example.com", created="1")
    assert claim_conflict(tr("b", "x", host="api.example.com", created="2"), [wild]) == wild
    assert claim_conflict(tr("b", "x", host="*.api.example.com", created="2"), [wild]) == wild
    exact = tr("a", "exact", host="api.example.com", created="1")
    assert claim_conflict(tr("b", "w", host="*.example.com", created="2"), [exact]) == exact
    assert claim_conflict(tr("b", "o", host="example.com", created="2"), [wild]) is None
    assert claim_conflict(tr("b", "o", host="api.example.org", created="2"), [exact, wild]) is None


def test_any_host_triggers_own_their_first_segment_and_a_leading_parameter_claims_all() -> None:
    shop = tr("a", "shop", "/shop/{*rest}", created="1")
    assert claim_conflict(tr("b", "s", "/shop/cart", created="2"), [shop]) == shop
    assert claim_conflict(tr("b", "blog", "/blog/{id}", created="2"), [shop]) is None
    assert claim_conflict(tr("b", "all", "/{*rest}", created="2"), [shop]) == shop
    everything = tr("a", "all", "/{*rest}", created="1")
    assert claim_conflict(tr("b", "blog", "/blog", created="2"), [everything]) == everything
    assert claim_conflict(tr("b", "h", "/{*rest}", host="b.example.com", created="2"), [everything]) is None


def test_a_claim_lost_owns_nothing() -> None:
    first = tr("a", "x", host="h.example.com", created="1")
    loser = tr("b", "x", "/blog", host="h.example.com", created="2")
    third = tr("c", "x", "/blog", host="h.example.com", created="3")
    assert claim_conflict(third, [first, loser]) == first


def test_within_one_second_the_written_claim_wins_and_only_two_written_ones_tie_by_name() -> None:
    # creationTimestamp has one-second resolution: a namespace sorting first must not win by its name.
    held = tr("z-victim", "site", host="t.example.com", created="5")
    newcomer = tr("a-attacker", "grab", host="t.example.com", created="5")
    assert claim_conflict(newcomer, [held]) == held
    assert displaced_by(newcomer, [held]) == []
    both_written = [held, newcomer]  # only by a race: every reader still decides alike
    assert claim_conflict(held, both_written) == newcomer
    assert claim_conflict(newcomer, both_written) is None


def test_the_table_serves_the_first_claim_whatever_the_order_of_entries() -> None:
    a = tr("a", "site", "/{*rest}", host="shop.example.com", created="2026-01-01T00:00:00Z")
    b = tr("b", "grab", "/{*rest}", host="shop.example.com", created="2026-01-02T00:00:00Z")
    orders: list[list[Entry]] = [[fn("a"), fn("b"), a, b], [fn("b"), b, fn("a"), a]]
    for entries in orders:
        table = build_table(entries, DEFAULTS)
        assert table.lookup("GET", "shop.example.com", "/x")[0].namespace == "a"


def test_a_refused_trigger_is_valid_false_with_the_reason() -> None:
    body: dict[str, Any] = {"metadata": {"generation": 2}}
    refused = status.trigger_status(body, phase="Failed", ready=False, reason="RouteConflict", message="owned by a")
    conditions = {c["type"]: c for c in refused["conditions"]}
    assert (conditions["Valid"]["status"], conditions["Valid"]["reason"]) == ("False", "RouteConflict")
    assert conditions["Valid"]["message"] == "owned by a" and conditions["Ready"]["status"] == "False"
    again = {"metadata": {}, "status": refused}
    ready = status.trigger_status(again, phase="Ready", ready=True, reason="Routed", message="")
    assert {c["type"]: c["status"] for c in ready["conditions"]} == {"Valid": "True", "Ready": "True"}
