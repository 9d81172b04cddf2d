"""Cache store, rate limiter and leader lease: one small interface (`interface`), implemented in-process here
(`local`: the `lf dev` default and the first tier everywhere; limits are per process) and on Valkey by the
lf-valkey distribution (`lf_valkey.stores`: the shared cache tier, token buckets synced in batches, and a lease
for one leader among many processes). `tokenbucket` holds the token-bucket arithmetic both share.
"""
