"""The LiteFunctions chart (deploy/helm/litefunctions) through the cached helm: lint and template, for the tests."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from tools.helm import build

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "litefunctions"
SAMPLE_VALUES = CHART / "ci" / "sample-values.yaml"
"""Values in the shape `make images` writes (made-up digests)."""


class HelmError(RuntimeError):
    """helm refused; the message carries its stderr."""


def helm(*args: str, timeout: float = 120) -> str:
    """Run the pinned helm (built into the cache when missing); its stdout, or HelmError with its stderr."""
    done = subprocess.run([str(build.ensure()), *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def template(
    *,
    namespace: str = "lf-system",
    release: str = "lf",
    values: Sequence[Path] = (SAMPLE_VALUES,),
    set_values: Sequence[str] = (),
    show_only: Sequence[str] = (),
) -> str:
    """`helm template` of the chart: the rendered YAML (CRDs not included; they are the chart's crds/)."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    for path in values:
        args += ["--values", str(path)]
    for item in set_values:
        args += ["--set", item]
    for item in show_only:
        args += ["--show-only", item]
    return helm(*args)
