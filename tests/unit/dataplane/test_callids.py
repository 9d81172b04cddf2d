"""Call ids: unique within a process and across processes, fixed shape, ordered by arrival."""

from __future__ import annotations

import re

from lf_dataplane.calls.callids import CallIds, new_prefix

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_ids_of_one_generator_are_unique_and_ordered() -> None:
    ids = CallIds()
    made = [ids.next_id() for _ in range(100_000)]
    assert len(set(made)) == len(made)
    assert made == sorted(made)
    assert all(HEX32.fullmatch(i) for i in made[:10])


def test_generators_in_different_processes_do_not_collide() -> None:
    # Each worker draws its own prefix; 1000 prefixes drawn in the same second are still distinct.
    prefixes = {CallIds().prefix for _ in range(1000)}
    assert len(prefixes) == 1000
    first = [CallIds().next_id() for _ in range(1000)]
    assert len(set(first)) == 1000


def test_prefix_is_start_time_then_entropy() -> None:
    assert new_prefix(now=0x5F5E1000, entropy=lambda n: b"\xab" * n) == "5f5e1000abababababab"
    assert CallIds(prefix="p").next_id() == "p000000000001"
