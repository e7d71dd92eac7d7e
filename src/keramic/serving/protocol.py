"""The HTTP layer under the REST API: uvicorn's httptools protocol, hardened against hostile clients.

uvicorn answers a request it cannot parse with a plain-text 400, and bounds neither how long a
client may take to send its request head nor how large that head may grow. Here every request the
HTTP layer refuses gets a JSON `{"error": ...}` like the API's own errors (400; 431 for an
oversized head; 408 for a head not complete in time), and at shutdown a connection still sending
its body is closed at once instead of holding the process up.
"""

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class ServingProtocol(HttpToolsProtocol):
    """httptools under uvicorn, with JSON errors, a request-head deadline and a head size limit.

    `head_timeout` and `max_head_bytes` are class attributes: `make_server` sets them on a subclass.
    """

    head_timeout = 10.0  # seconds for a complete request head, from connection or first byte
    max_head_bytes = 64 * 1024  # request line and headers together

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._head_too_large = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()  # a client that connects and sends nothing is not kept forever

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    # ---------------------------------------------------------------- the request head
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._head_too_large = True
            raise ValueError("request head too large")  # httptools turns it into HttpParserError

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._send_error(408, f"Request head not received within {self.head_timeout:g} s")

    # ---------------------------------------------------------------- errors and shutdown
    def send_400_response(self, msg: str) -> None:
        self._cancel_head_timer()
        if self._head_too_large:
            self._send_error(431, f"Request line and headers exceed {self.max_head_bytes} bytes")
        else:
            self._send_error(400, f"Malformed HTTP request: {msg}")

    def _send_error(self, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(head % (status, REASONS[status], len(body)) + body)
        self.transport.close()

    def shutdown(self) -> None:
        """At shutdown, a request whose body is still arriving is dropped: it was never accepted."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.response_started and cycle.more_body:
            self.transport.close()
            return
        super().shutdown()
