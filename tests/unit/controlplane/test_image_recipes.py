"""tools/images without Debian's servers or a registry: parsing apt's stanzas, where package files land, the Helm
values' shape, and what every recipe promises (non-root, entrypoints, unique names)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lf_controlplane.images.layers import Layer

from tools.images import build, debs, recipes

STANZAS = """\
Package: libfoo1
Version: 1:2.0-1
Depends: libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, libbar1:any
Pre-Depends: zlib1g
SHA256: abc
Filename: pool/main/f/foo/libfoo1_2.0-1_amd64.deb

Package: libfoo1
Version: 1:1.0-1
Depends: libold

Package: multi
Version: 1
Depends: a | b,
 c (<< 3)
"""


def test_stanzas_give_the_first_version_and_every_dependency_group() -> None:
    packages = debs.parse_stanzas(STANZAS)
    foo = packages["libfoo1"]
    assert (foo.version, foo.sha256, foo.filename) == ("1:2.0-1", "abc", "pool/main/f/foo/libfoo1_2.0-1_amd64.deb")
    assert foo.depends == (("zlib1g",), ("libc6",), ("debconf", "debconf-2.0"), ("libbar1",))
    assert packages["multi"].depends == (("a", "b"), ("c",))


@pytest.mark.parametrize(
    ("member", "placed"),
    [
        ("./lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libc.so.6"),
        ("./lib64/ld-linux-x86-64.so.2", "usr/lib64/ld-linux-x86-64.so.2"),
        ("./bin/dash", "usr/bin/dash"),
        ("./usr/bin/python3.11", "usr/bin/python3.11"),
        ("./usr/share/doc/libc6/copyright", "usr/share/doc/libc6/copyright"),
        ("./usr/share/doc/libc6/changelog.Debian.gz", None),
        ("./usr/share/man/man1/python3.11.1.gz", None),
        ("./etc/init.d/redis-server", None),
        ("./var/log/postgresql", None),
        ("./", None),
    ],
)
def test_package_files_land_in_merged_usr_without_docs_or_init_files(member: str, placed: str | None) -> None:
    assert debs._placed(member) == placed


def test_helm_values_have_the_shape_the_chart_reads(tmp_path: Path) -> None:
    layer = Layer(blob=tmp_path / "x", digest="sha256:" + "1" * 64, size=1, diff_id="sha256:" + "2" * 64)
    built = [build.Built(recipe, f"sha256:{i:064x}", 10, (layer,)) for i, recipe in enumerate(recipes.RECIPES, start=1)]
    values = yaml.safe_load(build.helm_values(built, "127.0.0.1:5000"))
    assert values["global"] == {"imageRegistry": "127.0.0.1:5000"}
    assert set(values["images"]) == {
        "ingestor",
        "dispatcher",
        "operator",
        "runtimePython",
        "runtimeGo",
        "runtimeRust",
        "nats",
        "redis",
        "postgres",
    }
    assert values["images"]["runtimePython"] == {
        "repository": "litefunctions/runtime-python",
        "digest": built[0].digest,
    }
    build.write_index(tmp_path, built)
    index = yaml.safe_load((tmp_path / "images.json").read_text())
    assert index["postgres"]["repository"] == "litefunctions/postgres"
    assert all(item["digest"].startswith("sha256:") and item["size"] == 10 for item in index.values())


def test_every_recipe_runs_as_nonroot_with_an_entrypoint_and_a_unique_name() -> None:
    assert len({r.name for r in recipes.RECIPES}) == len({r.key for r in recipes.RECIPES}) == len(recipes.RECIPES)
    for recipe in recipes.RECIPES:
        assert recipe.runtime.user == "65532:65532", recipe.name
        assert recipe.runtime.entrypoint, recipe.name
        assert set(recipe.allow) <= debs.NEVER, recipe.name
    compiled = {r.name: r for r in recipes.RECIPES if r.name in ("runtime-go", "runtime-rust")}
    assert not compiled["runtime-go"].glibc and compiled["runtime-rust"].glibc
    assert not any(r.packages or r.python for r in compiled.values())
    runtime_python = next(r for r in recipes.RECIPES if r.name == "runtime-python")
    assert runtime_python.python == ("lf-runtime",)


def test_base_files_declare_the_nonroot_user_and_merged_usr() -> None:
    files = {entry.path: entry for entry in recipes.base_files()}
    assert b"nonroot:x:65532:65532:" in (files["etc/passwd"].data or b"")
    assert files["lib"].target == "usr/lib" and files["bin"].target == "usr/bin"
    assert files["tmp"].mode == 0o1777
    assert (files["home/nonroot"].uid, files["home/nonroot"].gid) == (65532, 65532)


def test_resolve_refuses_an_unknown_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debs, "_show", lambda names: {})
    with pytest.raises(debs.DebError, match="'no-such' not found"):
        debs.resolve(["no-such"])


def test_resolve_follows_dependencies_minus_provided_and_never(monkeypatch: pytest.MonkeyPatch) -> None:
    known = debs.parse_stanzas(
        "Package: app\nVersion: 1\nDepends: libc6, debconf | debconf-2.0, liba | libb\n\n"
        "Package: libc6\nVersion: 2\n\nPackage: liba\nVersion: 3\nDepends: libz\n\n"
        "Package: libz\nVersion: 4\n\nPackage: libb\nVersion: 5\n"
    )
    monkeypatch.setattr(debs, "_show", lambda names: {n: known[n] for n in names if n in known})
    assert [p.name for p in debs.resolve(["app"], provided=["libc6"])] == ["app", "liba", "libz"]
