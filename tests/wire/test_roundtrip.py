"""Every typed message of every internal protocol: encode then decode is the identity,
and random bytes never raise anything but ``WireError``."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import types
import typing
from typing import Any, Union, get_args, get_origin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire import WireError, app, control, pipe
from wire.codec import Registry

FINITE = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(max_size=40)


def strategy(hint: Any) -> st.SearchStrategy[Any]:
    """A strategy for a field, from its annotation (the codec's supported types)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return st.one_of(*(strategy(a) for a in get_args(hint)))
    if hint is type(None):
        return st.none()
    if origin is tuple:
        return st.lists(strategy(get_args(hint)[0]), max_size=5).map(tuple)
    if origin is dict:
        return st.dictionaries(TEXT, strategy(get_args(hint)[1]), max_size=4)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: TEXT,
        int: st.integers(min_value=0, max_value=2**53),
        float: FINITE,
        bool: st.booleans(),
        bytes: st.binary(max_size=64),
    }
    if hint in simple:
        return simple[hint]
    assert dataclasses.is_dataclass(hint), hint
    return builds(hint)


def builds(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


REGISTRIES = {
    "events": pipe.EVENTS,
    "station": control.STATION_REQUESTS,
    "worker": control.WORKER_REQUESTS,
    "link": control.LINK_REQUESTS,
}
REPLIES = [
    control.Failure,
    control.StatusReply,
    control.LaunchLink,
    control.RouteReply,
    control.LogoutReply,
    control.SendReply,
    control.WaitReply,
    control.WorkerStatusReply,
    control.InfoReply,
    control.UnlinkReply,
    control.DecideReply,
    control.Noted,
]


@pytest.mark.parametrize("name", list(REGISTRIES))
def test_every_registered_message_round_trips(name: str) -> None:
    registry: Registry = REGISTRIES[name]

    @settings(max_examples=60, deadline=None)
    @given(st.sampled_from(list(registry.by_class)).flatmap(builds))
    def check(message: object) -> None:
        assert registry.decode(registry.encode(message)) == message

    check()


@pytest.mark.parametrize("cls", REPLIES)
def test_every_reply_round_trips(cls: type) -> None:
    @settings(max_examples=40, deadline=None)
    @given(builds(cls))
    def check(reply: object) -> None:
        assert control.decode_reply(control.encode_reply(reply), cls) == reply

    check()


CONN = st.integers(min_value=0, max_value=2**32 - 1)
FRAMES = st.one_of(
    st.builds(pipe.Open, CONN),
    st.builds(pipe.Data, CONN, st.binary(max_size=200)),
    st.builds(pipe.Lost, CONN),
    st.builds(pipe.Send, CONN, st.binary(max_size=200)),
    st.builds(
        pipe.CloseConn, CONN, st.text(alphabet=st.characters(max_codepoint=127), max_size=120)
    ),
    st.builds(pipe.Stop, TEXT),
    st.builds(pipe.PolicyDeadline, FINITE, TEXT),
    st.sampled_from(list(pipe.EVENTS.by_class)).flatmap(builds),
)


@settings(max_examples=300, deadline=None)
@given(FRAMES)
def test_pipe_frames_round_trip(message: pipe.PipeMessage) -> None:
    frame = pipe.encode(message)
    length, kind = struct.unpack_from(">IB", frame)
    assert length == len(frame) - 4
    assert pipe.decode(kind, frame[5:]) == message


APP = st.one_of(
    st.builds(
        app.Command,
        st.text(min_size=1, max_size=50),
        st.none() | st.text(min_size=1, max_size=20),
        st.none() | FINITE,
        st.none() | st.floats(min_value=0.001, max_value=1e6),
    ),
    st.builds(
        app.MirrorUpdate,
        st.sampled_from(["snapshot", "changes"]),
        st.integers(0, 2**53),
        st.lists(st.tuples(TEXT, TEXT), max_size=3).map(tuple),
        st.lists(st.tuples(TEXT, TEXT, TEXT, TEXT, FINITE), max_size=3).map(tuple),
    ),
    st.builds(
        app.Fates,
        *[st.lists(st.integers(1, 2**53), max_size=5).map(tuple) for _ in range(3)],
    ),
    st.builds(app.Policy, FINITE, st.sampled_from(["inactivity", "max-age", "scheduled"]), FINITE),
    st.builds(app.Device, st.text(max_size=64), st.none() | st.integers(0, 100)),
    st.builds(app.ReceiptKey, st.binary(min_size=32, max_size=32)),
    st.builds(app.Receipt, st.binary(max_size=300), st.binary(min_size=64, max_size=64)),
)


@settings(max_examples=300, deadline=None)
@given(APP)
def test_application_messages_round_trip(message: app.AppMessage) -> None:
    assert app.decode(app.encode(message)) == message


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 255))
def test_random_bytes_raise_only_wire_error(data: bytes, kind: int) -> None:
    decoders = [
        app.decode,
        lambda d: pipe.decode(kind, d),
        *(r.decode for r in REGISTRIES.values()),
        *(lambda d, c=c: control.decode_reply(d, c) for c in REPLIES),
    ]
    for decode in decoders:
        with contextlib.suppress(WireError):
            decode(data)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | FINITE | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(TEXT, JSONISH, max_size=6), st.sampled_from(list(REGISTRIES)))
def test_random_json_objects_raise_only_wire_error(value: dict[str, Any], name: str) -> None:
    import json

    registry = REGISTRIES[name]
    for kind in [*registry.by_name, "nonsense"]:
        line = json.dumps({**value, registry.key: kind}).encode()
        with contextlib.suppress(WireError):
            registry.decode(line)
