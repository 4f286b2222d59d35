"""The node protocol's side of the error model: which close code each failure gets
(only what the daemon must change is fatal), the node daemon's errors in the tree,
and log and exec stream messages decoded as strictly as every other message."""

from __future__ import annotations

from typing import Any

import pytest

from armillary import errors, protocol
from armillary.api.hub import Session


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.Unauthorized("unknown token"), protocol.CLOSE_UNAUTHORIZED),
        (errors.Forbidden("not a node key"), protocol.CLOSE_UNAUTHORIZED),
        (errors.ProtocolError("Hello.node: required field is missing"), protocol.CLOSE_INVALID),
        (errors.Invalid("labels: too many"), protocol.CLOSE_INVALID),
        (errors.PermanentError("this node is retired"), protocol.CLOSE_REFUSED),
        (errors.TemporaryError("the store is busy", delay_s=2), protocol.CLOSE_TRY_AGAIN),
        (errors.RateLimited("too many hellos", delay_s=5), protocol.CLOSE_TRY_AGAIN),
        (errors.Conflict("node row moved"), protocol.CLOSE_TRY_AGAIN),
        (TimeoutError(), protocol.CLOSE_TRY_AGAIN),
        (OSError("connection to the database lost"), protocol.CLOSE_TRY_AGAIN),
        (RuntimeError("a store failure of any other kind"), protocol.CLOSE_TRY_AGAIN),
    ],
)
def test_only_what_the_daemon_must_change_closes_the_session_for_good(
    error: BaseException, code: int
) -> None:
    assert protocol.close_code(error) == code


def test_the_retryable_close_code_is_not_fatal_and_every_fatal_one_is_named() -> None:
    assert protocol.CLOSE_TRY_AGAIN not in protocol.FATAL_CLOSE_CODES
    assert set(protocol.FATAL_CLOSE_CODES) == {
        protocol.CLOSE_INVALID,
        protocol.CLOSE_UNAUTHORIZED,
        protocol.CLOSE_REFUSED,
        protocol.CLOSE_REPLACED,
    }
    assert all(4000 <= code <= 4999 for code in [*protocol.FATAL_CLOSE_CODES, 4503])


@pytest.mark.parametrize(
    ("error", "parent"),
    [
        (errors.ProtocolError("x"), errors.Invalid),
        (errors.SpawnError(reason="PortInUse", message="port 80"), errors.ArmillaryError),
        (errors.CheckoutFailed("git archive failed"), errors.PermanentError),
        (errors.SessionRefused("4401 the token was refused"), errors.PermanentError),
        (errors.RateLimited("slow down", delay_s=1), errors.TemporaryError),
    ],
)
def test_the_node_daemons_errors_are_in_the_tree(error: Exception, parent: type) -> None:
    assert isinstance(error, parent)
    assert isinstance(error, errors.ArmillaryError)
    assert type(error).__name__ in (errors.__doc__ or "")


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        ("logs.open", {"stream": "s1"}, "logs.open.allocation: required field is missing"),
        (
            "logs.open",
            {"stream": "s1", "allocation": "a", "tail": "ten"},
            "logs.open.tail: expected int, got str",
        ),
        (
            "exec.open",
            {"stream": "s1", "allocation": "a", "command": "ls -l"},
            "exec.open.command: expected a list",
        ),
        (
            "exec.data",
            {"stream": "s1", "fd": "stdin", "data": ""},
            "exec.data.fd: expected one of ['stdout', 'stderr'], got 'stdin'",
        ),
        (
            "exec.end",
            {"stream": "s1", "exit_code": "0"},
            "exec.end.exit_code: expected int, got str",
        ),
        ("logs.data", {"stream": "s1", "data": "x", "colour": 1}, "logs.data: unknown field"),
        ("logs.end", {"error": "gone"}, "logs.end.stream: required field is missing"),
        ("stream.close", {}, "stream.close.stream: required field is missing"),
    ],
)
def test_stream_messages_are_decoded_strictly(
    kind: str, payload: dict[str, Any], message: str
) -> None:
    types: dict[str, type[Any]] = {
        **protocol.STREAM_CHUNKS,
        "logs.open": protocol.LogsOpen,
        "exec.open": protocol.ExecOpen,
        "stream.close": protocol.StreamClose,
    }
    with pytest.raises(errors.ProtocolError) as caught:
        protocol.decode(types[kind], payload, path=kind)
    assert message in str(caught.value)


def test_a_frame_that_is_not_json_is_a_protocol_error() -> None:
    with pytest.raises(errors.ProtocolError, match="Envelope: expected a JSON object"):
        protocol.parse("{not json")
    with pytest.raises(errors.ProtocolError, match="Envelope: expected an object, got list"):
        protocol.parse("[]")
    assert protocol.parse('{"type": "report"}') == protocol.Envelope(type="report")


def test_stream_chunks_round_trip_and_reach_their_stream_with_only_the_fields_set() -> None:
    chunks: list[protocol.StreamChunk] = [
        protocol.ExecData(stream="s1", fd="stderr", data="aGk="),
        protocol.ExecEnd(stream="s1", exit_code=3),
    ]
    for chunk in chunks:
        kind = protocol.STREAM_KINDS[type(chunk)]
        assert protocol.decode(protocol.STREAM_CHUNKS[kind], protocol.encode(chunk)) == chunk

    session = Session("node-a", websocket=None)  # type: ignore[arg-type]  # never sends here
    stream, queue = session.open_stream()
    session.deliver(protocol.ExecData(stream=stream, fd="stderr", data="aGk="))
    session.deliver(protocol.ExecData(stream="s-unknown", fd="stdout", data="eA=="))
    session.deliver(protocol.ExecEnd(stream=stream, exit_code=3))
    received = [queue.get_nowait() for _ in range(queue.qsize())]
    assert received == [
        {"stream": stream, "fd": "stderr", "data": "aGk="},
        {"stream": stream, "exit_code": 3},
        None,
    ]
