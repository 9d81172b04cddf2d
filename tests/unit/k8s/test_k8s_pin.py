"""tools/k8s: the wrapper go.mod is what `pin` generates — every staging module kubernetes requires at v0.0.0 and
maps to ./staging, replaced by its published version, all at the same minor (the apiserver refuses a mix)."""

from __future__ import annotations

import re

from tools.k8s import build

PUBLISHED = """module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
\tk8s.io/apiserver v0.0.0
\tk8s.io/sample-apiserver v0.0.0
\tk8s.io/utils v0.0.0-20260108192941-914a6e750570
\tgo.etcd.io/etcd/server/v3 v3.7.0 // indirect
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/apiserver => ./staging/src/k8s.io/apiserver
\tk8s.io/sample-apiserver => ./staging/src/k8s.io/sample-apiserver
\tk8s.io/sample-controller => ./staging/src/k8s.io/sample-controller
)
"""


def test_only_required_staging_modules_are_replaced() -> None:
    # sample-controller is replaced but not required (and not served by the proxy): left out
    assert build.staging_modules(PUBLISHED) == ["k8s.io/api", "k8s.io/apiserver", "k8s.io/sample-apiserver"]


def test_rendered_go_mod() -> None:
    text = build.render_apiserver_go_mod("v1.37.2", ["k8s.io/api", "k8s.io/apiserver"], "1.26.0")
    assert "require k8s.io/kubernetes v1.37.2" in text
    assert "\tk8s.io/api => k8s.io/api v0.37.2" in text
    assert "k8s.io/kubernetes/cmd/kube-apiserver" in text


def test_checked_in_wrapper_is_consistent() -> None:
    text = (build.APISERVER_MODULE / "go.mod").read_text()
    version = build.kubernetes_version()
    staging = "v0." + version.lstrip("v").split(".", 1)[1]
    replaces = re.findall(r"^\t(k8s\.io/\S+) => (k8s\.io/\S+) (v\S+)$", text, re.MULTILINE)
    assert len(replaces) > 25
    assert all(a == b and v == staging for a, b, v in replaces)
    assert build.etcd_version().startswith("v3.")


def test_ldflags_carry_the_version() -> None:
    version = build.kubernetes_version()
    flags = " ".join(build.binaries(with_kubectl=True)[1].ldflags)
    assert f"k8s.io/component-base/version.gitVersion={version}" in flags
    assert f"gitMinor={version.split('.')[1]}" in flags
