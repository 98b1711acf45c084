"""A request that learns of its refusal before it sends its body: ``Expect: 100-continue``.

httpx (through httpcore) writes a whole request body before it reads any answer, so a refused
upload of a large file would be sent whole first. Here the request's head goes first, with
``Expect: 100-continue`` (RFC 9110, section 10.1.1); uvicorn answers ``100 Continue`` only
once the app starts to read the body, and the gateway checks the Upload-Token (signature,
claims, the provider rule, the media type and the declared size) before it does — so a
refusal arrives instead, and not one byte of the file is sent. A server (or proxy) that
ignores the expectation gets the body after a short wait, as RFC 9110 lets a client go on.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable

import h11
import httpx

__all__ = ["post_expecting_continue"]

#: How long to wait for ``100 Continue`` before sending the body anyway.
CONTINUE_WAIT_SECONDS = 2.0
#: The largest answer read: an upload's receipt or problem is a few KB; a server that sends
#: more is not the gateway, and is not let fill the client's memory.
MAX_ANSWER_BYTES = 1024 * 1024


def post_expecting_continue(
    url: httpx.URL,
    *,
    headers: Iterable[tuple[str, str]],
    body: Iterable[bytes],
    timeout: float,
    connect_timeout: float = 10.0,
) -> httpx.Response:
    """POST ``body`` to ``url`` (http or https) only once the server says it will take it;
    the final response, whether the body was sent or not."""
    host, port = url.host, url.port or (443 if url.scheme == "https" else 80)
    sock = socket.create_connection((host, port), timeout=connect_timeout)
    try:
        if url.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        connection = h11.Connection(h11.CLIENT)
        head = h11.Request(
            method="POST",
            target=url.raw_path,
            headers=[
                ("Host", url.netloc.decode("ascii")),
                ("Expect", "100-continue"),
                ("Connection", "close"),
                *headers,
            ],
        )
        sock.sendall(connection.send(head))
        sock.settimeout(CONTINUE_WAIT_SECONDS)
        try:
            first = _next_event(connection, sock)
        except TimeoutError:  # no word from the server: it may ignore the expectation
            first = None
        sock.settimeout(timeout)
        if isinstance(first, h11.Response):  # refused before the body: nothing is sent
            return _finish(connection, sock, first)
        try:
            for chunk in body:
                sock.sendall(connection.send(h11.Data(data=chunk)))
            sock.sendall(connection.send(h11.EndOfMessage()))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed mid-body: its answer is still to be read
        response = _next_event(connection, sock)
        while isinstance(response, h11.InformationalResponse):
            response = _next_event(connection, sock)
        if not isinstance(response, h11.Response):
            raise httpx.RemoteProtocolError(f"no response from {url}")
        return _finish(connection, sock, response)
    finally:
        sock.close()


def _next_event(connection: h11.Connection, sock: socket.socket) -> h11.Event | None:
    """The next event of the server's side, reading from ``sock`` as needed."""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(sock.recv(65536))
            continue
        if event is h11.PAUSED:
            return None
        assert isinstance(event, h11.Event)
        return event


def _finish(connection: h11.Connection, sock: socket.socket, head: h11.Response) -> httpx.Response:
    """The response whose head is ``head``, with its whole body."""
    content = bytearray()
    while True:
        event = _next_event(connection, sock)
        if isinstance(event, h11.Data):
            content += event.data
            if len(content) > MAX_ANSWER_BYTES:
                raise httpx.RemoteProtocolError(f"an answer over {MAX_ANSWER_BYTES} bytes")
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed) or event is None:
            break
    return httpx.Response(
        head.status_code,
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers],
        content=bytes(content),
    )
