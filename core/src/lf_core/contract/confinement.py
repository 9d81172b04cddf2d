"""Which NATS subjects and JetStream streams a Trigger of a namespace may take its messages from. Pure.

The dispatcher that runs NATS triggers holds a connection that may read any subject, so the rule is checked
where a Trigger is accepted (`lf_core.contract.specs.resolve_trigger`: `lf dev`, the operator) and again by the
dispatcher before it subscribes (an entry written to LF_ROUTES by hand gets no further).

The rule, one for subjects and one for streams:

- A Trigger in namespace NS listens on subjects under `ev.NS.>` only: `ev`, then NS itself (a literal token,
  never a wildcard), then at least one more token (which may be `*` or a final `>`). Everything else is refused:
  the platform's `lf.>` (calls, async calls, logs, dead letters), `_INBOX.>` (replies), `$JS.>`, `$KV.>`,
  `$SYS.>` (the broker's API and buckets), a `>` or `*` reaching past the namespace, and other namespaces'
  `ev.OTHER.>`.
- Its JetStream form reads from a stream NS owns: named `EV_NS` or `EV_NS_{suffix}` (a namespace is a DNS label,
  which has no `_`, so a name belongs to exactly one namespace: `EV_a-b_x` is `a-b`'s, never `a`'s), with the
  Trigger's subject (under `ev.NS.>`, as above) as the consumer's filter.
"""

from __future__ import annotations

from lf_core.contract.names import InvalidName, check_name

EVENT_ROOT = "ev"
STREAM_PREFIX = "EV_"
_RESERVED_ROOTS = {
    "lf": "lf.> carries the platform's own calls, async calls, logs and dead letters",
    "_INBOX": "_INBOX.> carries replies to other clients' requests",
    "$JS": "$JS.> is JetStream's API",
    "$KV": "$KV.> holds the platform's key-value buckets",
    "$SYS": "$SYS.> is the broker's system account",
    "$O": "$O.> holds object stores",
}
_MAX_SUBJECT = 255
_MAX_STREAM = 255
_STREAM_FORBIDDEN = frozenset(" \t\r\n.*>/\\")


def subject_rule(namespace: str) -> str:
    """The rule as a condition message states it."""
    return f"a Trigger in namespace {namespace!r} may only use subjects under {EVENT_ROOT}.{namespace}.>"


def stream_rule(namespace: str) -> str:
    return (
        f"a Trigger in namespace {namespace!r} may only read streams named {STREAM_PREFIX}{namespace} or "
        f"{STREAM_PREFIX}{namespace}_<suffix>"
    )


def subject_error(namespace: str, subject: str) -> str | None:
    """Why `subject` is refused for a Trigger in `namespace` (a message naming the rule), or None when allowed."""
    try:
        check_name(namespace, "namespace")
    except InvalidName as exc:
        return str(exc)
    rule = subject_rule(namespace)
    if not subject or len(subject) > _MAX_SUBJECT:
        return f"spec.nats.subject: must be 1 to {_MAX_SUBJECT} characters; {rule}"
    if any(c.isspace() for c in subject) or not subject.isascii():
        return f"spec.nats.subject: {subject[:80]!r} has white space or non-ASCII characters; {rule}"
    tokens = subject.split(".")
    malformed = _token_error(tokens)
    if malformed is not None:
        return f"spec.nats.subject: {subject!r} {malformed}; {rule}"
    root = tokens[0]
    if root in _RESERVED_ROOTS:
        return f"spec.nats.subject: {subject!r} is refused ({_RESERVED_ROOTS[root]}); {rule}"
    if root != EVENT_ROOT:
        if root in ("*", ">"):
            return f"spec.nats.subject: {subject!r} reaches every namespace and the platform's subjects; {rule}"
        return f"spec.nats.subject: {subject!r} is outside {EVENT_ROOT}.{namespace}.>; {rule}"
    if len(tokens) < 3:
        return f"spec.nats.subject: {subject!r} must name a subject under {EVENT_ROOT}.{namespace}.>; {rule}"
    owner = tokens[1]
    if owner in ("*", ">"):
        return f"spec.nats.subject: {subject!r} reaches other namespaces' events; {rule}"
    if owner != namespace:
        return f"spec.nats.subject: {subject!r} belongs to namespace {owner!r}; {rule}"
    return None


def _token_error(tokens: list[str]) -> str | None:
    """What is wrong with a subject's tokens as NATS reads them, or None."""
    if any(not part for part in tokens):
        return "has an empty token"
    last = len(tokens) - 1
    for i, part in enumerate(tokens):
        if ">" in part and (len(part) > 1 or i != last):
            return "has '>' other than as a whole last token"
        if "*" in part and len(part) > 1:
            return "has '*' other than as a whole token"
    return None


def stream_error(namespace: str, stream: str) -> str | None:
    """Why JetStream stream `stream` is refused for a Trigger in `namespace`, or None when the namespace owns it."""
    rule = stream_rule(namespace)
    if not stream or len(stream) > _MAX_STREAM:
        return f"spec.nats.stream: must be 1 to {_MAX_STREAM} characters; {rule}"
    if any(c in _STREAM_FORBIDDEN for c in stream) or not stream.isascii() or not stream.isprintable():
        return f"spec.nats.stream: {stream[:80]!r} is not a stream name (no '.', '*', '>', '/', '\\\\' or spaces)"
    if not stream.startswith(STREAM_PREFIX):
        return f"spec.nats.stream: {stream!r} is not a namespace's event stream; {rule}"
    owner, _, _suffix = stream[len(STREAM_PREFIX) :].partition("_")
    if owner != namespace:
        return f"spec.nats.stream: {stream!r} belongs to namespace {owner!r}; {rule}"
    return None


def nats_trigger_error(namespace: str, subject: str, stream: str = "") -> str | None:
    """The first refusal of a NATS Trigger's subject and stream, or None when both are the namespace's."""
    return subject_error(namespace, subject) or (stream_error(namespace, stream) if stream else None)
