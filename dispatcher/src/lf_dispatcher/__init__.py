"""The dispatcher: every async call and trigger of the platform runs through it (docs/architecture.md,
"The dispatcher"). Runtimes speak the sync protocol only."""
