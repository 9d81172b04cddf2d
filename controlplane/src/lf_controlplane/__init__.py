"""LiteFunctions control plane: the `lf` CLI and the local platform it runs (`lf dev`)."""
