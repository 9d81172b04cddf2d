"""LiteFunctions data plane: the HTTP ingestor, forwarding over NATS, and the typed models everyone shares."""
