"""Tests for dot-stuffing removal and end-of-data detection across chunk boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailreleased.odmr.body import DotDecoder, DotStuffer, dot_stuff


def decode_in_chunks(stream: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
    """Feed ``stream`` split at ``cuts``; return (content, bytes after the end-of-data line)."""
    decoder = DotDecoder()
    content = b""
    bounds = sorted({0, len(stream), *(c for c in cuts if 0 < c < len(stream))})
    for start, end in zip(bounds, bounds[1:], strict=False):
        decoded = decoder.feed(stream[start:end])
        content += decoded.data
        if decoded.done:
            return content, decoded.rest + stream[end:]
    raise AssertionError("end-of-data line not found")


@pytest.mark.parametrize(
    ("stream", "content", "rest"),
    [
        (b"hello\r\n.\r\n", b"hello\r\n", b""),
        (b".\r\n", b"", b""),
        (b"..leading\r\n.\r\n", b".leading\r\n", b""),
        (b"a\r\n..\r\n.\r\nQUIT\r\n", b"a\r\n.\r\n", b"QUIT\r\n"),
        (b"bare\n.\n", b"bare\n", b""),
        (b"mixed\n.\r\nNOOP\r\n", b"mixed\n", b"NOOP\r\n"),
        (b"x\r\n.y\r\n.\r\n", b"x\r\ny\r\n", b""),
        (b"dot cr\r\n.\rz\r\n.\r\n", b"dot cr\r\n\rz\r\n", b""),
        (b"mid.line .\r\n.\r\n", b"mid.line .\r\n", b""),
    ],
    ids=["simple", "empty", "stuffed-first", "pipelined-rest", "bare-lf", "lf-then-crlf", "stuffed-middle",
         "dot-cr-not-end", "dot-mid-line"],
)
def test_decoder_cases(stream: bytes, content: bytes, rest: bytes) -> None:
    """Each case decodes the same whole or split at every position."""
    for cut in range(len(stream) + 1):
        assert decode_in_chunks(stream, [cut]) == (content, rest), f"cut at {cut}"


def test_decoder_byte_by_byte() -> None:
    """A terminator fed one byte at a time is still found."""
    stream = b"line\r\n..\r\n.\r\nQUIT\r\n"
    assert decode_in_chunks(stream, list(range(len(stream)))) == (b"line\r\n.\r\n", b"QUIT\r\n")


def test_decoder_rejects_feed_after_end() -> None:
    """Feeding past the end-of-data line is a programming error."""
    decoder = DotDecoder()
    decoder.feed(b".\r\n")
    with pytest.raises(RuntimeError):
        decoder.feed(b"x")


bodies = st.lists(
    st.sampled_from([b".", b"..", b"\r\n", b"\n", b"\r", b"a", b"\r\n.\r\n", b"\n.\n", b"x.y", b"\x00\xff"]),
    max_size=40,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(body=bodies, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_stuffed_body_round_trips(body: bytes, cuts: list[int]) -> None:
    """Any body survives dot-stuffing and decoding byte-identical, however it is chunked."""
    content, rest = decode_in_chunks(dot_stuff(body) + b"NEXT", cuts)
    expected = body if not body or body.endswith(b"\n") else body + b"\r\n"
    assert content == expected
    assert rest == b"NEXT"


@settings(max_examples=200, deadline=None)
@given(body=bodies, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_chunked_stuffer_matches_whole(body: bytes, cuts: list[int]) -> None:
    """DotStuffer on chunks gives the same bytes as dot_stuff on the whole body."""
    stuffer = DotStuffer()
    bounds = sorted({0, len(body), *(c for c in cuts if 0 < c < len(body))})
    stuffed = b"".join(stuffer.feed(body[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
    assert stuffed + stuffer.end() == dot_stuff(body)


def decode_converting(stream: bytes, cuts: list[int]) -> tuple[bytes, bytes, int]:
    """Feed ``stream`` to a converting decoder split at ``cuts``; return (content, rest, size)."""
    decoder = DotDecoder(lf_endings=True)
    content = b""
    size = 0
    bounds = sorted({0, len(stream), *(c for c in cuts if 0 < c < len(stream))})
    for start, end in zip(bounds, bounds[1:], strict=False):
        decoded = decoder.feed(stream[start:end])
        content += decoded.data
        size += decoded.size
        if decoded.done:
            return content, decoded.rest + stream[end:], size
    raise AssertionError("end-of-data line not found")


@pytest.mark.parametrize(
    ("stream", "content", "rest", "size"),
    [
        (b"hello\r\n.\r\n", b"hello\n", b"", 7),
        (b"a\r\n..\r\n.\r\nQUIT\r\n", b"a\n.\n", b"QUIT\r\n", 6),
        (b"bare\n.\n", b"bare\n", b"", 5),
        (b"mixed\n.\r\nNOOP\r\n", b"mixed\n", b"NOOP\r\n", 6),
        (b"dot cr\r\n.\rz\r\n.\r\n", b"dot cr\n\rz\n", b"", 12),
        (b"cr cr\r\r\n.\r\n", b"cr cr\r\n", b"", 8),
    ],
    ids=["simple", "pipelined-rest", "bare-lf", "lf-then-crlf", "dot-cr-not-end", "cr-before-crlf"],
)
def test_converting_decoder_cases(stream: bytes, content: bytes, rest: bytes, size: int) -> None:
    """The converting decoder gives LF content, the received rest and the received size at every cut."""
    for cut in range(len(stream) + 1):
        assert decode_converting(stream, [cut]) == (content, rest, size), f"cut at {cut}"


@settings(max_examples=400, deadline=None)
@given(body=bodies, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_converting_matches_decode_then_convert(body: bytes, cuts: list[int]) -> None:
    """Converting while decoding equals decoding, then replacing CRLF with LF, however it is chunked."""
    stream = dot_stuff(body) + b"NEXT\r\n"
    plain, plain_rest = decode_in_chunks(stream, cuts)
    content, rest, size = decode_converting(stream, cuts)
    assert content == plain.replace(b"\r\n", b"\n")
    assert rest == plain_rest
    assert size == len(plain)


@settings(max_examples=400, deadline=None)
@given(raw=bodies, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_converting_finds_same_end(raw: bytes, cuts: list[int]) -> None:
    """On unstuffed input the converting decoder stops at the same end-of-data line as the plain one."""
    stream = raw + b"\r\n.\r\nNEXT\r\n"
    plain, plain_rest = decode_in_chunks(stream, cuts)
    content, rest, size = decode_converting(stream, cuts)
    assert content == plain.replace(b"\r\n", b"\n")
    assert rest == plain_rest
    assert size == len(plain)
