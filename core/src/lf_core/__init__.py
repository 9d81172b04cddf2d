"""LiteFunctions' shared core: what the ingestor, the runtimes, the control plane (and the dispatcher, the
autoscaler) all need, and nothing that only one of them needs. It depends on lf-native and msgspec alone.

- `contract`: names, subjects, the call protocol's constants, the Function/Trigger specs, route entries.
- `bus`: the lean NATS connection (`link`), request/reply over it (`requester`), the JetStream API (`jetstream`)
  and the errors of all three (`errors`).
- `asynccalls`: the async-call streams and call record, the retry policy, dead letters.
- `stores`: the Store / RateLimiter / Lease interfaces and their in-process implementations (Valkey's are in
  the lf-valkey distribution, which a function's replica never installs).
- `ssrf`: resolving a callback URL to a public address. `tracing`: OpenTelemetry set-up, sampling and
  trace-context helpers, imported lazily (the `tracing` extra installs the SDK).
"""
