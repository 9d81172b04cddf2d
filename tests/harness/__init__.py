"""The one test harness every suite starts its processes with: nats-server (natsserver), the ingestor (ingestor),
runtime replicas of any language (runtime), LF_ROUTES entries (routes), plus the shared waiting, process-stopping,
redis-server, OTLP collector and promtool helpers."""
