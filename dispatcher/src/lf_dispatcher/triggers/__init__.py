"""Cron and NATS Triggers, run inside the dispatcher: `serve_triggers(env)` (docs: `service`, `cron`, `subjects`)."""

from lf_dispatcher.triggers.service import serve_triggers

__all__ = ["serve_triggers"]
