"""Cache store, rate limiter and leader lease: one small interface (`interface`), two implementations each.

- `local`: in-process, the `lf dev` default and the first tier everywhere. Limits are per ingestor process.
- `valkey`: Valkey (redis-py asyncio + hiredis) for a cluster: the shared cache tier, token buckets synced in
  batches (or exact, one call per request), and a lease for one leader among many processes.

`buckets` holds the token-bucket arithmetic both share, as pure code over a passed-in clock.
"""

from lf_dataplane.limits.interface import Decision, Lease, RateLimiter, Store

__all__ = ["Decision", "Lease", "RateLimiter", "Store"]
