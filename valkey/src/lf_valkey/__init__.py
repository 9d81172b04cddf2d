"""LiteFunctions stores on Valkey (Redis protocol), behind the interfaces of `lf_core.stores`."""
