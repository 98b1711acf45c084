"""The SDK's ``Expect: 100-continue`` request against small real servers on 127.0.0.1: the
body goes only after ``100 Continue``, an early answer stops it, and an answer larger than any
the gateway sends is refused rather than read into memory."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from gateway.sdk._expect import MAX_ANSWER_BYTES, post_expecting_continue


def _serve_once(handle: Callable[[socket.socket], None]) -> tuple[httpx.URL, threading.Thread]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                handle(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return httpx.URL(f"http://127.0.0.1:{port}/v1/uploads/r"), thread


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    return data


def _body(sent: list[int]) -> Iterator[bytes]:
    for _ in range(4):
        sent.append(1)
        yield b"x" * 1000


def test_the_body_goes_after_100_continue() -> None:
    received = bytearray()

    def handle(conn: socket.socket) -> None:
        head = _read_head(conn)
        assert b"expect: 100-continue" in head.lower()
        received.extend(head.split(b"\r\n\r\n", 1)[1])
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(received) < 4000:
            received.extend(conn.recv(4096))
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")

    url, thread = _serve_once(handle)
    sent: list[int] = []
    answer = post_expecting_continue(
        url, headers=[("Content-Length", "4000")], body=_body(sent), timeout=5
    )
    thread.join(5)
    assert (answer.status_code, answer.content) == (201, b"ok")
    assert bytes(received) == b"x" * 4000


def test_an_early_refusal_stops_the_body() -> None:
    def handle(conn: socket.socket) -> None:
        _read_head(conn)
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nno!!")

    url, thread = _serve_once(handle)
    sent: list[int] = []
    answer = post_expecting_continue(
        url, headers=[("Content-Length", "4000")], body=_body(sent), timeout=5
    )
    thread.join(5)
    assert (answer.status_code, answer.content) == (403, b"no!!")
    assert sent == []  # not one chunk of the body was even produced


def test_an_answer_larger_than_any_the_gateway_sends_is_refused() -> None:
    size = MAX_ANSWER_BYTES + 65536

    def handle(conn: socket.socket) -> None:
        _read_head(conn)
        conn.sendall(f"HTTP/1.1 403 Forbidden\r\nContent-Length: {size}\r\n\r\n".encode())
        with contextlib.suppress(OSError):  # the client stopped reading: what this test wants
            conn.sendall(b"y" * size)

    url, thread = _serve_once(handle)
    with pytest.raises(httpx.RemoteProtocolError):
        post_expecting_continue(url, headers=[("Content-Length", "4000")], body=[], timeout=5)
    thread.join(5)
