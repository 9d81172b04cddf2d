"""Why a request over the bus got no answer: the errors every `Bus` implementation raises and every caller catches.

They belong to the transport (`lf_core.bus.link` and `lf_core.bus.requester` raise them), so callers — the
ingestor's forwarding, the runtimes, the control plane — depend on the bus, never on one another.
"""

from __future__ import annotations


class BusError(Exception):
    """A request that got no answer from a replica."""


class NoResponders(BusError):  # noqa: N818 (named like lf_native's RouteNotFound)
    """No replica subscribes to the subject."""


class BusTimeout(BusError):  # noqa: N818 (named like lf_native's RouteNotFound)
    """No reply within the timeout."""


class BrokerUnavailable(BusError):  # noqa: N818 (named like lf_native's RouteNotFound)
    """Not connected to the broker (or the connection failed while sending)."""


class PayloadTooLarge(BusError):  # noqa: N818 (named like lf_native's RouteNotFound)
    """The request is larger than the broker's max_payload."""


class AuthorizationError(BrokerUnavailable):
    """The broker refused the credentials (or their absence)."""
