"""The LiteFunctions ingestor: HTTP (granian, RSGI) in, each call routed and forwarded over NATS to a replica.

- `http`: the RSGI application (`app`), the async endpoints (`asyncapi`), HTTP <-> envelope mapping (`mapping`),
  and starting granian (`server`).
- `calls`: what happens to one call: the route table (`routetable`), the response cache (`caching`), overload
  shedding (`overload`), call ids (`callids`). Forwarding with busy retries is `lf_core.bus.invoking`, shared with
  the dispatcher.
- `observability`: Prometheus metrics, JSON logs, the LF_LOGS stream of functions' output (`functionlogs`).
- `settings`: the ingestor's environment.
"""
