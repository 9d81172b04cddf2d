"""LiteFunctions native core: the routing table and the envelope codec, compiled from Rust."""
