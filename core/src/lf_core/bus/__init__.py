"""The NATS bus: the lean connection, request/reply over it, the JetStream API, and their errors."""
