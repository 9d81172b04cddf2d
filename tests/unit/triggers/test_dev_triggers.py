"""`lf dev`'s Trigger manifests in a function folder (controlplane/src/lf_controlplane/dev/triggers.py)."""

from __future__ import annotations

from pathlib import Path

from lf_controlplane.dev.folders import fingerprint, read_folder
from lf_controlplane.dev.triggers import read_triggers, trigger_entries
from lf_core.contract.routes import decode_event_trigger_route, decode_trigger_route

FUNCTION = """apiVersion: litefunctions.io/v1alpha1
kind: Function
metadata: {name: report, namespace: shop}
spec: {runtime: python, handler: handler.handle}
"""
TRIGGERS = """apiVersion: litefunctions.io/v1alpha1
kind: Trigger
metadata: {name: nightly}
spec:
  cron: {schedule: "0 3 * * *", timezone: Europe/Paris, concurrencyPolicy: Forbid}
---
apiVersion: litefunctions.io/v1alpha1
kind: Trigger
metadata: {name: orders}
spec:
  nats: {subject: ev.shop.orders.>, stream: EV_shop}
---
apiVersion: litefunctions.io/v1alpha1
kind: Trigger
metadata: {name: web}
spec:
  http: {path: "/report/{day}", methods: [GET]}
---
apiVersion: litefunctions.io/v1alpha1
kind: Trigger
metadata: {name: spy}
spec:
  nats: {subject: lf.invoke.>}
"""


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "function.yaml").write_text(FUNCTION)
    (tmp_path / "handler.py").write_text("def handle(req):\n    return 'ok'\n")
    (tmp_path / "triggers.yaml").write_text(TRIGGERS)
    return tmp_path


def test_trigger_manifests_become_entries_and_refusals_name_the_rule(tmp_path: Path) -> None:
    folder = read_folder(_folder(tmp_path))
    assert folder.function is not None
    triggers, problems = read_triggers(folder.path, folder.function)
    assert [t.name for t in triggers] == ["nightly", "orders", "web"]
    assert all(t.namespace == "shop" and t.function == "report" for t in triggers)  # the folder's defaults
    assert len(problems) == 1 and "document 4" in problems[0] and "may only use subjects under ev.shop.>" in problems[0]
    entries, clashes = trigger_entries(triggers)
    assert clashes == []
    assert sorted(entries) == ["et.shop.nightly", "et.shop.orders", "tr.shop.web"]
    cron = decode_event_trigger_route(entries["et.shop.nightly"])
    assert cron.cron is not None and cron.cron.concurrency_policy == "Forbid"
    assert decode_trigger_route(entries["tr.shop.web"]).methods == ("GET",)


def test_a_trigger_file_of_its_own_and_name_clashes(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "again.trigger.yaml").write_text(TRIGGERS.split("---")[0])
    found = read_folder(folder)
    assert found.function is not None
    triggers, _ = read_triggers(folder, found.function)
    _, clashes = trigger_entries(triggers)
    assert clashes == ["trigger 'nightly' is defined twice in namespace 'shop'"]


def test_editing_triggers_does_not_change_the_code_fingerprint(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    before = fingerprint(folder)
    (folder / "triggers.yaml").write_text(TRIGGERS.replace("0 3", "0 4"))
    (folder / "x.trigger.yaml").write_text("")
    assert fingerprint(folder) == before
    (folder / "handler.py").write_text("def handle(req):\n    return 'changed'\n")
    assert fingerprint(folder) != before
