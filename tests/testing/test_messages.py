"""Message generation and dot-stuffing across chunk boundaries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailreleased.testing.messages import QueuedMessage, dot_stuff_chunks, make_messages


def _unstuff(stuffed: bytes) -> bytes:
    assert stuffed.endswith(b"\r\n.\r\n") or stuffed == b".\r\n"
    body = stuffed[: -len(b".\r\n")]
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def test_make_messages_is_deterministic() -> None:
    """The same arguments give the same bytes, ids and Message-IDs."""
    first = make_messages("example.test", 3, 4096)
    second = make_messages("example.test", 3, 4096)
    assert first == second
    assert [m.id for m in first] == ["msg-000000", "msg-000001", "msg-000002"]
    assert b"Message-ID: <msg-000001@provider.example.test>\r\n" in first[1].data


def test_make_messages_size_and_dot_lines() -> None:
    """Messages are close to the requested size and contain dot lines."""
    message = make_messages("example.test", 1, 4096)[0]
    assert 4096 <= message.size < 4096 + 100
    assert b"\r\n.\r\n" in message.data
    assert b"\r\n..two dots\r\n" in message.data


def test_dot_stuffing_lone_dot_and_start() -> None:
    """A leading dot and a lone dot line are doubled."""
    stuffed = b"".join(dot_stuff_chunks(iter([b".start\r\n.\r\nend\r\n"])))
    assert stuffed == b"..start\r\n..\r\nend\r\n.\r\n"


def test_dot_stuffing_adds_missing_crlf() -> None:
    """A message without a final CRLF gets one before the end marker."""
    stuffed = b"".join(dot_stuff_chunks(iter([b"no newline"])))
    assert stuffed == b"no newline\r\n.\r\n"


@given(
    lines=st.lists(st.sampled_from([b"", b".", b"..", b".x", b"a.b", b"text"]), max_size=30),
    chunk_size=st.integers(min_value=1, max_value=17),
)
def test_dot_stuffing_round_trip(lines: list[bytes], chunk_size: int) -> None:
    """Stuffing in chunks of any size and unstuffing gives the message back."""
    data = b"".join(line + b"\r\n" for line in lines)
    message = QueuedMessage("m", "a@b.test", ("c@d.test",), data)
    stuffed = b"".join(dot_stuff_chunks(message.chunks(chunk_size)))
    assert b"\r\n.\r\n" not in stuffed[:-5]
    assert _unstuff(stuffed) == data
