"""What a handler sees and may return: `Request`, `Response`, and the multi-dicts behind headers and query.

`Request` wraps the decoded envelope and parses nothing up front: the header index, the query, the JSON body and
the CloudEvent are built on first use. Constructing one costs an object allocation, because it happens on every
call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar, overload
from urllib.parse import parse_qsl, unquote

from lf_runtime import jsoncodec

_T = TypeVar("_T")
Pairs = list[tuple[str, str]]


class Envelope(Protocol):
    """The fields of a decoded request envelope that `Request` reads (`lf_native.RequestEnvelope` has them)."""

    @property
    def call_id(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def headers(self) -> Pairs: ...
    @property
    def params(self) -> Pairs: ...
    @property
    def body(self) -> bytes: ...
    @property
    def traceparent(self) -> str: ...
    @property
    def tracestate(self) -> str: ...


class RequestError(ValueError):
    """The request cannot be read the way the handler asked (e.g. `json()` on a body that isn't JSON).

    Left uncaught, the runtime answers it with a 400 (the caller's fault) instead of a 500.
    """


class MultiDict(Mapping[str, str]):
    """Read-only pairs with repeated names; `d[name]` and `get` give the first value, `get_all` every value."""

    __slots__ = ("_index", "_pairs")

    _fold: bool = False  # fold names to lowercase (headers) or keep them (query)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs: Pairs = list(pairs)
        self._index: dict[str, list[str]] | None = None

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self._pairs:
                index.setdefault(name.lower() if self._fold else name, []).append(value)
            self._index = index
        return index

    def _key(self, name: str) -> str:
        return name.lower() if self._fold else name

    def __getitem__(self, name: str) -> str:
        return self._lookup()[self._key(name)][0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._lookup()

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self._lookup())

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, /, default: str | _T) -> str | _T: ...
    def get(self, name: str, /, default: object = None) -> object:
        values = self._lookup().get(self._key(name))
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, in the order received (empty if absent)."""
        return list(self._lookup().get(self._key(name), ()))

    def multi_items(self) -> Pairs:
        """All pairs as received, names unchanged."""
        return list(self._pairs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._pairs!r})"


class Headers(MultiDict):
    """Request headers: names compare case-insensitively; iteration yields lowercase names."""

    __slots__ = ()
    _fold = True


class QueryParams(MultiDict):
    """The parsed query string (`?a=1&a=2&b=`): names are case-sensitive, blank values are kept."""

    __slots__ = ()

    @classmethod
    def parse(cls, query: str) -> QueryParams:
        return cls(parse_qsl(query, keep_blank_values=True))


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """The CloudEvent a call carries (`Request.event`): its attributes, typed. The data is the request's body,
    `datacontenttype` its Content-Type.

    The ingestor accepts an event in either HTTP mode (ce-* headers, or `application/cloudevents+json`) and
    hands every runtime the binary mode, after checking that specversion is "1.0", that id, source and type are
    there, and that time is RFC 3339 (docs/protocol.md, "CloudEvents").
    """

    id: str
    source: str
    type: str
    specversion: str = "1.0"
    subject: str | None = None
    time: datetime | None = None
    """Aware (with the event's offset); microseconds (finer digits are dropped)."""
    datacontenttype: str | None = None
    dataschema: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    """Every other attribute (`ce-{name}` header), by name, as a string (percent-decoded)."""


_CE = "ce-"
_EVENT_FIELDS = frozenset({"id", "source", "type", "specversion", "subject", "dataschema"})
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)\Z", re.ASCII)


def cloud_event(pairs: Iterable[tuple[str, str]]) -> CloudEvent | None:
    """The CloudEvent in binary mode's headers (`ce-*` and Content-Type), None without `ce-specversion`.

    Values are percent-decoded (the HTTP binding); the first of a repeated header counts; a `time` that is not
    RFC 3339 is None (the ingestor refuses it: a message from elsewhere may carry one); a missing id, source or
    type is "" (idem).
    """
    attributes: dict[str, str] = {}
    content_type = None
    for name, value in pairs:
        lower = name.lower()
        if lower.startswith(_CE):
            attribute = lower[3:]
            if attribute not in attributes:
                attributes[attribute] = unquote(value) if "%" in value else value
        elif lower == "content-type" and content_type is None:
            content_type = value
    if "specversion" not in attributes:
        return None
    known = {name: attributes.pop(name) for name in _EVENT_FIELDS.intersection(attributes)}
    stamp = attributes.pop("time", None)
    return CloudEvent(
        id=known.get("id", ""),
        source=known.get("source", ""),
        type=known.get("type", ""),
        specversion=known["specversion"],
        subject=known.get("subject"),
        time=_rfc3339(stamp) if stamp is not None else None,
        datacontenttype=content_type,
        dataschema=known.get("dataschema"),
        extensions=attributes,
    )


def _rfc3339(text: str) -> datetime | None:
    """RFC 3339 (not ISO 8601's other forms, which fromisoformat also reads), as the Go and Rust runtimes do."""
    if _RFC3339.match(text) is None:
        return None
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError:  # a day or an offset that does not exist, a leap second
        return None


class Request:
    """One call as the handler sees it. Everything is read-only.

    Attributes:
        call_id: the call's id, also in the ingestor's `X-Call-Id` header.
        deadline: `time.monotonic()` value by which the runtime answers 504 if the handler hasn't returned.
    """

    __slots__ = ("_env", "_event", "_headers", "_query", "call_id", "deadline")

    _event: CloudEvent | None  # set on first use of `event` (unset until then: construction stays as cheap)

    def __init__(self, envelope: Envelope, deadline: float) -> None:
        self._env = envelope
        self.call_id: str = envelope.call_id
        self.deadline = deadline
        self._headers: Headers | None = None
        self._query: QueryParams | None = None

    @property
    def method(self) -> str:
        return self._env.method

    @property
    def path(self) -> str:
        """The path below the function (`/a/b` for `/function/name/a/b`), `/` when empty."""
        return self._env.path

    @property
    def query_string(self) -> str:
        """The raw query string, without `?`."""
        return self._env.query

    @property
    def query(self) -> QueryParams:
        """The query string as a multi-dict (parsed on first use)."""
        if self._query is None:
            self._query = QueryParams.parse(self._env.query)
        return self._query

    @property
    def query_params(self) -> dict[str, str]:
        """The query string as a plain dict; a repeated name keeps its first value."""
        return dict(self.query)

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self._env.headers)
        return self._headers

    @property
    def params(self) -> dict[str, str]:
        """Route parameters (`{id}` in an HTTP trigger's path)."""
        return dict(self._env.params)

    @property
    def body(self) -> bytes:
        return self._env.body

    @property
    def event(self) -> CloudEvent | None:
        """The CloudEvent this call carries (its attributes, typed; the data is `body`), or None when the
        request is not one. Read from the `ce-*` headers on first use."""
        try:
            return self._event
        except AttributeError:
            event = self._event = cloud_event(self._env.headers)
            return event

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes become U+FFFD)."""
        return self._env.body.decode("utf-8", "replace")

    @property
    def traceparent(self) -> str:
        return self._env.traceparent

    @property
    def tracestate(self) -> str:
        return self._env.tracestate

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            RequestError: the body is empty or not valid JSON (answered 400 if the handler lets it through).
        """
        body = self._env.body
        if not body:
            raise RequestError("request body is empty; expected JSON")
        try:
            return jsoncodec.decode(body)
        except jsoncodec.DecodeError as exc:
            raise RequestError(f"request body is not valid JSON: {exc}") from None

    def remaining(self) -> float:
        """Seconds left before the runtime gives up on this call (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path} call_id={self.call_id}>"


class Response:
    """What a handler returns when bytes, str, dict or None are not enough.

    Args:
        body: bytes, or str (sent as UTF-8).
        status: HTTP status code.
        headers: a mapping or a list of `(name, value)` pairs (a list may repeat names, e.g. `Set-Cookie`).
        content_type: sets `Content-Type`; when omitted, a str body is sent as `text/plain; charset=utf-8`.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: bytes | str = b"",
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ) -> None:
        if isinstance(body, str):
            body = body.encode()
            if content_type is None:
                content_type = "text/plain; charset=utf-8"
        self.body: bytes = body
        self.status = status
        pairs: Pairs = []
        if headers is not None:
            pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
        if content_type is not None:
            pairs = [(n, v) for n, v in pairs if n.lower() != "content-type"]
            pairs.append(("content-type", content_type))
        self.headers: Pairs = pairs

    @classmethod
    def json(
        cls, data: Any, status: int = 200, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    ) -> Response:
        """`data` encoded as JSON (msgspec: dicts, lists, dataclasses, Structs, datetimes, ...)."""
        return cls(jsoncodec.encode(data), status, headers, "application/json")

    @classmethod
    def text(
        cls, text: str, status: int = 200, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    ) -> Response:
        return cls(text.encode(), status, headers, "text/plain; charset=utf-8")

    @classmethod
    def html(
        cls, html: str, status: int = 200, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    ) -> Response:
        return cls(html.encode(), status, headers, "text/html; charset=utf-8")

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Response:
        return cls(b"", status, [("location", location)])

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        return cls(b"", status)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"
