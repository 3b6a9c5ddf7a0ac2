"""The tunnel's endpoints, where callers have always imported them.

The session was one 760-line module; it is now split by job, and this module only
re-exports, so ``from tunnel.session import PhoneEndpoint, StationEndpoint, PhoneState,
Endpoint, Settings`` keeps working everywhere:

* ``tunnel.states``: the transport's and the session's states and events, as tables.
* ``tunnel.drivers``: the handshake-driver protocol both sides' drivers implement.
* ``tunnel.conn``: one transport as an endpoint sees it.
* ``tunnel.data_path``: messages, acks and notices on the link once it is up.
* ``tunnel.endpoint``: what both sides share: transports, liveness, the session, logout.
* ``tunnel.phone_endpoint``: the phone (pairing, parallel attempts, resume, refusals).
* ``tunnel.station_endpoint``: the station worker (offers, code slots, resume, logout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunnel.drivers import HandshakeDriver, PhoneHandshake
from tunnel.endpoint import Endpoint
from tunnel.flights import SECRET_LEN
from tunnel.phone_endpoint import MAX_SAVED_ADDRESSES, PhoneEndpoint, PhoneState
from tunnel.settings import Settings
from tunnel.states import ImpossibleTransition, SessionState, TransportState

if TYPE_CHECKING:
    from tunnel.station_endpoint import StationEndpoint

# The transport's state kept its old name here.
ConnState = TransportState


def __getattr__(name: str) -> object:
    # Imported on first use: the phone's process never needs the station's side.
    if name == "StationEndpoint":
        from tunnel.station_endpoint import StationEndpoint

        return StationEndpoint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_SAVED_ADDRESSES",
    "SECRET_LEN",
    "ConnState",
    "Endpoint",
    "HandshakeDriver",
    "ImpossibleTransition",
    "PhoneEndpoint",
    "PhoneHandshake",
    "PhoneState",
    "SessionState",
    "Settings",
    "StationEndpoint",
    "TransportState",
]
