"""One call's way through the ingestor: routing, forwarding, caching, overload, call ids."""
