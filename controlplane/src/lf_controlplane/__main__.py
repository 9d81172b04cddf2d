"""`python -m lf_controlplane` is the `lf` command."""

from lf_controlplane.cli import app

app()
