"""helm, built from the Go module proxy (helm.sh/helm/v4) into a cache outside the repo, for the chart's tests.

`python -m tools.helm build` builds it (skipped when the cached binary reports the pinned version); `python -m
tools.helm path` prints where it is (building it first when missing). See tools/helm/build.py.
"""
