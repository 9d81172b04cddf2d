"""What the ingestor answers a call with, in the shape granian's `response_bytes` takes: one definition for the
HTTP side, the forwarding and the cache."""

from __future__ import annotations

Header = tuple[str, str]
Reply = tuple[int, list[Header], bytes]
"""`(status, headers, body)`."""
