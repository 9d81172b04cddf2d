"""`lf deploy`'s manifest: the folder's code inline, namespace precedence, refusals; readiness from status."""

from __future__ import annotations

from pathlib import Path

import pytest
from lf_controlplane import deploying

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_example_manifest_carries_its_code(tmp_path: Path) -> None:
    manifest = deploying.manifest_of(EXAMPLES / "hello", None, "ctx-ns")
    assert manifest["metadata"] == {"name": "hello", "namespace": "ctx-ns"}
    files = manifest["spec"]["source"]["files"]
    assert files == {"handler.py": (EXAMPLES / "hello" / "handler.py").read_text()}


def test_namespace_precedence(tmp_path: Path) -> None:
    (tmp_path / "function.yaml").write_text(
        "apiVersion: litefunctions.io/v1alpha1\nkind: Function\nmetadata: {name: f, namespace: mine}\n"
    )
    (tmp_path / "handler.py").write_text("def handle(req): ...\n")
    assert deploying.manifest_of(tmp_path, None, "ctx")["metadata"]["namespace"] == "mine"
    assert deploying.manifest_of(tmp_path, "flag", "ctx")["metadata"]["namespace"] == "flag"


def test_tool_state_and_hidden_files_stay_out(tmp_path: Path) -> None:
    for name in ("handler.py", "lib/util.py", ".env", "__pycache__/x.pyc", ".lf/state.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert sorted(deploying.folder_files(tmp_path)) == ["handler.py", "lib/util.py"]


def test_binary_and_oversized_code_are_refused(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe")
    with pytest.raises(deploying.DeployError, match="not UTF-8"):
        deploying.folder_files(tmp_path)
    (tmp_path / "blob.bin").write_text("x" * (deploying.MAX_INLINE_BYTES + 1))
    with pytest.raises(deploying.DeployError, match="too large"):
        deploying.folder_files(tmp_path)


def test_invalid_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "function.yaml").write_text(
        "apiVersion: litefunctions.io/v1alpha1\nkind: Function\nmetadata: {name: f}\nspec: {timeout: soon}\n"
    )
    with pytest.raises(deploying.DeployError, match="spec.timeout"):
        deploying.manifest_of(tmp_path, None, "default")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("{limits: {requestBody: 1Gi}}", "spec.limits.requestBody: '1Gi' is over the cap of 7340032 bytes"),
        ("{timeout: 1200h}", "spec.timeout: '1200h' is over the platform's maximum"),
        ("{scaling: {max: 5}}", "spec.scaling.max: not served yet"),
        ("{auth: {mode: apiKey}}", "spec.auth.mode: not served yet"),
    ],
    ids=["item 5: body over the cap", "item 10: timeout", "item 12: scaling.max", "item 12: auth"],
)
def test_lf_deploy_refuses_what_the_platform_cannot_serve(tmp_path: Path, spec: str, field: str) -> None:
    """Issue 14: `lf deploy` refuses before it reaches the cluster, with the message the operator would give."""
    (tmp_path / "function.yaml").write_text(
        f"apiVersion: litefunctions.io/v1alpha1\nkind: Function\nmetadata: {{name: f}}\nspec: {spec}\n"
    )
    (tmp_path / "handler.py").write_text("def handle(req): ...\n")
    with pytest.raises(deploying.DeployError) as info:
        deploying.manifest_of(tmp_path, None, "default")
    assert field in str(info.value)


def obj(generation: int, **status: object) -> dict[str, object]:
    return {"metadata": {"generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("stored", "ready", "failure"),
    [
        (obj(2, observedGeneration=1), False, None),
        (obj(2, observedGeneration=2, phase="Ready", conditions=[{"type": "Ready", "status": "True"}]), True, None),
        (
            obj(
                2,
                observedGeneration=2,
                phase="Failed",
                conditions=[{"type": "Valid", "status": "False", "message": "m"}],
            ),
            False,
            "invalid spec: m",
        ),
    ],
    ids=["not observed", "ready", "invalid"],
)
def test_ready_state(stored: dict[str, object], ready: bool, failure: str | None) -> None:
    assert deploying.ready_state(stored)[:2] == (ready, failure)
