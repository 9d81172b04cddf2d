"""Zot, the platform's OCI registry, for tests and development: built from the source snapshot, run on loopback.

    python -m tools.registry build       # build (cached) zot-minimal into ~/.cache/lf/zot/<commit>/
    python -m tools.registry dir         # print that cache folder
    python -m tools.registry start       # run Zot in the foreground with htpasswd auth; print address and credentials

build.py builds, zot.py runs it (htpasswd auth, or bearer auth against tokens.py's token service).
"""
