"""jepsen/s3proxy.py: the `s3` nemesis's fault proxy, an HTTP/1.1 proxy on loopback between the
cluster's S3 client and the S3 server (moto) that answers like a failing object store when told.

Owns request/response framing (Content-Length, chunked, `Expect: 100-continue`, keep-alive) and
the fault modes; it runs an asyncio loop in a thread of its own, so the harness (threads) drives
it with plain calls: `FaultProxy(upstream).start()`, `set_fault(mode)`, `clear()`, `stop()`.
Every request the client sends is read whole; then, per the mode in force when it is read:

| mode          | what the client sees                                                      | reaches S3 |
|---------------|---------------------------------------------------------------------------|------------|
| (none)        | S3's answer                                                               | yes        |
| `5xx`         | 500 InternalError / 503 SlowDown / 503 ServiceUnavailable, S3 XML body   | no         |
| `5xx-after`   | the same, after S3 stored the request (the answer is lost)                | yes        |
| `4xx`         | 400 InvalidArgument: a refusal retrying cannot fix (opt-in, not in MODES)  | no         |
| `hang`        | nothing: the connection stays open and silent (client timeout)            | no         |
| `reset`       | TCP RST                                                                   | no         |
| `reset-after` | TCP RST after S3 stored the request                                       | yes        |
| `slow`        | S3's answer after `slow_delay` s, trickled `trickle_bytes` every 0.1 s    | yes        |

`rate` (0..1) is the share of requests the mode hits (the others pass). A hung connection stays
hung after `clear()` (a black hole does not heal the sockets it swallowed) until the client
closes it or the proxy stops. It must not know lograft or the bucket's layout: it proxies bytes.
Stdlib only.
"""

import asyncio
import collections
import random
import socket
import struct
import threading

MODES = ("5xx", "5xx-after", "hang", "reset", "reset-after", "slow")
# Modes a caller must ask for by name: `4xx` makes the uploader dead-letter what it refuses.
EXTRA_MODES = ("4xx",)

S3_ERRORS = (
    (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    (503, "Service Unavailable", "SlowDown", "Please reduce your request rate."),
    (503, "Service Unavailable", "ServiceUnavailable", "Service is unable to handle request."),
)

REFUSAL = (400, "Bad Request", "InvalidArgument", "jepsen s3proxy: this request is refused")

MAX_HEAD = 64 * 1024


class BadRequest(Exception):
    pass


def _headers(head):
    """{lower-case name: value} of an HTTP head (request or status line first)."""
    out = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            out[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return out


async def _read_body(reader, headers, until_eof=False):
    """The raw body bytes (chunked bodies kept chunked, so they are forwarded as received)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            out += size_line
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    t = await reader.readuntil(b"\r\n")
                    out += t
                    if t == b"\r\n":
                        return bytes(out)
            out += await reader.readexactly(size + 2)
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return await reader.read() if until_eof else b""


async def read_request(reader):
    """(head, body, headers, method) of the next request; None at a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise
    except asyncio.LimitOverrunError:
        raise BadRequest("request head too long")
    headers = _headers(head)
    method = head.split(b" ", 1)[0].decode("latin-1")
    return head, headers, method


async def read_response(reader, method):
    """(head, body, status) of a response, interim 1xx answers skipped."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status >= 200 or status == 101:
            break
    headers = _headers(head)
    if method == "HEAD" or status in (204, 304):
        body = b""
    else:
        body = await _read_body(reader, headers, until_eof=True)
    return head, body, status


def error_response(status, reason, code, message, keep_alive=True):
    body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message>"
            "<RequestId>jepsen-s3proxy</RequestId></Error>" % (code, message)).encode()
    head = ("HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
            "x-amz-request-id: jepsen-s3proxy\r\nConnection: %s\r\n\r\n"
            % (status, reason, len(body), "keep-alive" if keep_alive else "close")).encode()
    return head + body


class FaultProxy:
    def __init__(self, upstream, host="127.0.0.1", port=0, slow_delay=(0.5, 4.0), trickle_bytes=64,
                 seed=None, upstream_timeout=60):
        self.upstream = upstream  # (host, port) of the S3 server
        self.host = host
        self.port = port
        self.slow_delay = slow_delay  # (min, max) seconds before a slow answer starts
        self.trickle_bytes = trickle_bytes
        self.upstream_timeout = upstream_timeout
        self.rng = random.Random(seed)
        self.mode = None
        self.rate = 1.0
        self.lock = threading.Lock()
        self.stats = collections.Counter()  # "passed", "<mode>", "upstream-error", ...
        self.loop = None
        self.server = None
        self.thread = None
        self.conns = set()
        self.released = None  # asyncio.Event: set at stop, frees hung connections

    # -- control (any thread) -----------------------------------------------------------------

    def start(self):
        ready = threading.Event()
        err = []

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                self.released = asyncio.Event()
                self.server = self.loop.run_until_complete(
                    asyncio.start_server(self._handle, self.host, self.port, limit=MAX_HEAD))
                self.port = self.server.sockets[0].getsockname()[1]
            except Exception as e:  # noqa: BLE001
                err.append(e)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            self.loop.close()

        self.thread = threading.Thread(target=run, name="s3proxy", daemon=True)
        self.thread.start()
        ready.wait(10)
        if err:
            raise err[0]
        return self

    @property
    def address(self):
        return self.host, self.port

    def set_fault(self, mode, rate=1.0):
        if mode not in MODES + EXTRA_MODES:
            raise ValueError("unknown s3 fault mode %r (choose from %s)" % (
                mode, ", ".join(MODES + EXTRA_MODES)))
        with self.lock:
            self.mode, self.rate = mode, rate

    def clear(self):
        with self.lock:
            self.mode = None

    def counts(self):
        with self.lock:
            return dict(self.stats)

    def stop(self):
        if not self.loop:
            return

        async def shutdown():
            self.server.close()
            self.released.set()
            for w in list(self.conns):
                w.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        except Exception:  # noqa: BLE001
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop = None

    # -- the proxy (event loop) ---------------------------------------------------------------

    def _pick(self):
        with self.lock:
            mode = self.mode if self.mode and self.rng.random() < self.rate else None
            self.stats[mode or "passed"] += 1
            return mode

    def _count(self, key):
        with self.lock:
            self.stats[key] += 1

    async def _handle(self, reader, writer):
        self.conns.add(writer)
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    break
                head, headers, method = req
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                body = await _read_body(reader, headers)
                close = headers.get("connection", "").lower() == "close"
                mode = self._pick()
                if mode == "hang":
                    await self._hang(reader)
                    return
                if mode == "reset":
                    self._reset(writer)
                    return
                if mode in ("5xx", "4xx"):
                    err = self.rng.choice(S3_ERRORS) if mode == "5xx" else REFUSAL
                    writer.write(error_response(*err, keep_alive=not close))
                    await writer.drain()
                    if close:
                        break
                    continue
                answer = await self._forward(head, body, method)
                if answer is None:
                    self._count("upstream-error")
                    answer = error_response(502, "Bad Gateway", "InternalError",
                                            "proxy: the S3 server did not answer", keep_alive=False)
                    close = True
                if mode == "reset-after":
                    self._reset(writer)
                    return
                if mode == "5xx-after":
                    answer = error_response(*self.rng.choice(S3_ERRORS), keep_alive=not close)
                if mode == "slow":
                    await asyncio.sleep(self.rng.uniform(*self.slow_delay))
                    for i in range(0, len(answer), self.trickle_bytes):
                        writer.write(answer[i:i + self.trickle_bytes])
                        await writer.drain()
                        await asyncio.sleep(0.1)
                else:
                    writer.write(answer)
                    await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, BadRequest, ValueError, OSError,
                asyncio.CancelledError):  # cancelled: the proxy stops
            pass
        finally:
            self.conns.discard(writer)
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _forward(self, head, body, method):
        """Send one request to S3 on a connection of its own; its whole answer (bytes) or None."""
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(*self.upstream, limit=MAX_HEAD),
                                          self.upstream_timeout)
        except (OSError, asyncio.TimeoutError):
            return None
        try:
            w.write(head + body)
            await w.drain()
            rhead, rbody, _ = await asyncio.wait_for(read_response(r, method), self.upstream_timeout)
            # The client's connection is kept alive: S3's answer must be framed (not "until EOF").
            h = _headers(rhead)
            if "content-length" not in h and "chunked" not in h.get("transfer-encoding", "").lower() \
                    and method != "HEAD":
                lines = [l for l in rhead.split(b"\r\n") if l and not l.lower().startswith(b"connection:")]
                rhead = b"\r\n".join(lines) + b"\r\nContent-Length: %d\r\n\r\n" % len(rbody)
            return rhead + rbody
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ValueError, IndexError):
            return None
        finally:
            w.close()

    async def _hang(self, reader):
        """Answer nothing until the client gives up (EOF) or the proxy stops."""
        eof = asyncio.ensure_future(reader.read())
        rel = asyncio.ensure_future(self.released.wait())
        while True:
            done, _ = await asyncio.wait({eof, rel}, return_when=asyncio.FIRST_COMPLETED)
            if rel in done:
                eof.cancel()
                return
            if eof.result() == b"":
                rel.cancel()
                return
            eof = asyncio.ensure_future(reader.read())  # bytes after the request: swallowed

    @staticmethod
    def _reset(writer):
        sock = writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        writer.transport.abort()
