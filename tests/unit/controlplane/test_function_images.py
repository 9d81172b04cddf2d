"""A function's image from its folder (lf_controlplane.images.functions) and `lf deploy`'s choice between an image
and inline code — without a registry, a compiler or a network: a Python function without requirements on a base
read from a layout."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from lf_controlplane import deploying
from lf_controlplane.images import functions, pysite
from lf_controlplane.images.layers import Entry, members, write_layer
from lf_controlplane.images.layout import Layout, Runtime
from lf_core.contract.specs import Function, load_manifest

MANIFEST = "apiVersion: litefunctions.io/v1alpha1\nkind: Function\nmetadata: {name: greet}\nspec: {runtime: %s}\n"


def folder_of(tmp_path: Path, runtime: str = "python") -> Path:
    folder = tmp_path / "greet"
    folder.mkdir()
    (folder / "function.yaml").write_text(MANIFEST % runtime)
    (folder / "handler.py").write_text("def handle(req):\n    return 'hi'\n")
    for name in (".secrets/token", "__pycache__/handler.cpython-311.pyc", ".lf/state.json"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("never in an image")
    return folder


def base_layout(tmp_path: Path) -> str:
    layout = Layout.create(tmp_path / "base")
    layer = write_layer([Entry("usr/bin/python3", data=b"not really"), Entry("function", "dir")], layout.blobs)
    runtime = Runtime(entrypoint=("python3", "-m", "lf_runtime"), env=("LF_FUNCTION_DIR=/function",), user="65532")
    layout.write_image("runtime-python", base=None, layers=[layer], runtime=runtime)
    return f"oci:{layout.root}:runtime-python"


def function_of(folder: Path) -> Function:
    return load_manifest(deploying.manifest_of(folder, "team", "default", inline=False))


def build(folder: Path, base: str, out: Path) -> functions.FunctionImage:
    return asyncio.run(
        functions.build_function_image(
            function_of(folder), folder, base, out, printer=lambda *_: None, cache=out.parent / "cache"
        )
    )


def test_the_image_is_the_base_plus_the_code_without_secrets_or_tool_state(tmp_path: Path) -> None:
    folder, base = folder_of(tmp_path), base_layout(tmp_path)
    image = build(folder, base, tmp_path / "out")
    stored = image.layout.image(functions.FUNCTION_REF)
    assert len(stored.layers) == 2
    assert stored.runtime.entrypoint == ("python3", "-m", "lf_runtime")
    assert stored.runtime.labels["io.litefunctions.function"] == "team/greet"
    names = {m.name: m for m in members(image.layers[-1].blob)}
    assert set(names) == {"function", "function/function.yaml", "function/handler.py"}
    assert (names["function/handler.py"].uid, names["function/handler.py"].mode) == (0, 0o644)


def test_the_same_folder_gives_the_same_digest_and_a_change_another(tmp_path: Path) -> None:
    folder, base = folder_of(tmp_path), base_layout(tmp_path)
    first = build(folder, base, tmp_path / "one")
    assert build(folder, base, tmp_path / "two").digest == first.digest
    (folder / "handler.py").write_text("def handle(req):\n    return 'hello'\n")
    assert build(folder, base, tmp_path / "three").digest != first.digest


def test_a_folder_without_function_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("x")
    with pytest.raises(functions.ImageBuildError, match="no function.yaml"):
        functions.code_entries(tmp_path)


def test_a_bad_layout_base_is_named(tmp_path: Path) -> None:
    with pytest.raises(functions.ImageBuildError, match="oci:DIR:REF"):
        functions.open_base("oci:nowhere", Layout.create(tmp_path / "l"))


def test_inline_deploy_of_a_function_with_requirements_names_the_registry_option(tmp_path: Path) -> None:
    folder = folder_of(tmp_path)
    (folder / "requirements.txt").write_text("msgspec==0.19.0\n")
    with pytest.raises(deploying.DeployError, match="requirements.txt.*--registry HOST:PORT"):
        deploying.manifest_of(folder, None, "default")
    manifest = deploying.manifest_of(folder, None, "default", inline=False)
    assert deploying.needs_image(manifest) and "source" not in manifest["spec"]


@pytest.mark.parametrize("runtime", ["go", "rust"])
def test_inline_deploy_of_a_compiled_function_names_the_registry_option(tmp_path: Path, runtime: str) -> None:
    folder = folder_of(tmp_path, runtime)
    with pytest.raises(deploying.DeployError, match=f"a {runtime} function runs from an image.*--registry"):
        deploying.manifest_of(folder, None, "default")


def test_registry_credentials_from_a_file(tmp_path: Path) -> None:
    plain = tmp_path / "creds"
    plain.write_text("alice:s3:cret\n")
    assert deploying.read_credentials(plain, "127.0.0.1:5000") == ("alice", "s3:cret")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"127.0.0.1:5000": {"username": "bob", "password": "pw"}}}))
    assert deploying.read_credentials(config, "127.0.0.1:5000") == ("bob", "pw")
    plain.write_text("no colon\n")
    with pytest.raises(deploying.DeployError, match="user:password"):
        deploying.read_credentials(plain, "127.0.0.1:5000")


def test_default_base_is_the_runtime_image_make_images_pushes() -> None:
    assert functions.default_base("127.0.0.1:5000", "go") == "127.0.0.1:5000/litefunctions/runtime-go:0.1.0"


def test_tidy_drops_what_names_this_machine_or_this_moment(tmp_path: Path) -> None:
    info = tmp_path / "lf_native-0.1.0.dist-info"
    (info / "sboms").mkdir(parents=True)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_text("#!/root/.venv/bin/python\n")
    (tmp_path / "lf_native").mkdir()
    (tmp_path / "lf_native" / "__init__.py").write_text("")
    for name in ("direct_url.json", "uv_cache.json", "REQUESTED", "sboms/lf-native.cyclonedx.json", "METADATA"):
        (info / name).write_text("x")
    (info / "RECORD").write_text(
        "lf_native/__init__.py,sha256=a,0\nlf_native-0.1.0.dist-info/METADATA,sha256=b,1\n"
        "lf_native-0.1.0.dist-info/uv_cache.json,sha256=c,1\nlf_native-0.1.0.dist-info/sboms/lf-native.cyclonedx.json,,\n"
        "lf_native-0.1.0.dist-info/direct_url.json,,\n../../bin/tool,,\n"
    )
    pysite.tidy(tmp_path)
    assert sorted(p.name for p in info.iterdir()) == ["METADATA", "RECORD"]
    assert not (tmp_path / "bin").exists()
    assert (info / "RECORD").read_text() == (
        "lf_native/__init__.py,sha256=a,0\nlf_native-0.1.0.dist-info/METADATA,sha256=b,1\n"
    )
