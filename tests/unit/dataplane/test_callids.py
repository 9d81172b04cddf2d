"""Call ids: fixed shape, unique within a process and across processes, and unguessable (issue 14, item 1)."""

from __future__ import annotations

import os
import re

from lf_dataplane.calls.callids import POOL_BYTES, RANDOM_HEX, CallIds

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_ids_are_32_hex_digits_and_unique() -> None:
    ids = CallIds()
    made = [ids.next_id() for _ in range(100_000)]
    assert len(set(made)) == len(made)
    assert all(HEX32.fullmatch(i) for i in made)


def test_the_time_comes_first_and_every_id_takes_fresh_random_digits() -> None:
    drawn: list[int] = []

    def entropy(n: int) -> bytes:
        drawn.append(n)
        return bytes(range(256)) * (n // 256) + bytes(range(n % 256))

    ids = CallIds(entropy=entropy, clock=lambda: 0x5F5E1000)
    per_pool = POOL_BYTES * 2 // RANDOM_HEX
    made = [ids.next_id() for _ in range(per_pool + 1)]
    assert made[0] == "5f5e1000" + bytes(range(12)).hex()
    assert made[1] == "5f5e1000" + bytes(range(12, 24)).hex()
    assert drawn == [POOL_BYTES, POOL_BYTES]  # a refill after a whole pool, never a slice reused
    assert all(i.startswith("5f5e1000") for i in made)


def test_generators_in_different_processes_do_not_collide() -> None:
    first = [CallIds().next_id() for _ in range(1000)]
    assert len(set(first)) == 1000


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    ids = CallIds()
    ids.next_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids go to the parent
        os.close(read)
        os.write(write, "".join(ids.next_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 1024).decode()
    os.close(read)
    os.waitpid(pid, 0)
    mine = "".join(ids.next_id() for _ in range(3))
    assert len(child) == 96 and child != mine
    assert {child[i : i + 32] for i in range(0, 96, 32)}.isdisjoint({mine[i : i + 32] for i in range(0, 96, 32)})
