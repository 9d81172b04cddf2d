"""Async calls: the JetStream streams and call record, the retry policy and dead letters."""
