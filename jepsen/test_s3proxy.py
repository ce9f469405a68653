"""Tests of jepsen/s3proxy.py (the s3 nemesis's fault proxy) with real sockets on 127.0.0.1: a
tiny HTTP/1.1 server stands in for S3 (it stores PUT bodies, answers GET), the proxy sits in
front of it, and a client talks to the proxy. Each fault mode is checked for what the client
sees and whether the request reached the server; also pass-through with keep-alive, chunked
bodies, `Expect: 100-continue`, a hung connection staying hung after `clear()`, the fault
rate, and the bucket snapshot's file names (jepsen/s3bucket.py's `local_name`).

    python3 -m unittest jepsen/test_s3proxy.py      # from the repo root
"""

import http.client
import http.server
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import s3bucket  # noqa: E402
import s3proxy  # noqa: E402


class Store(http.server.BaseHTTPRequestHandler):
    """PUT stores the body under the path (chunked bodies decoded); GET returns it."""

    protocol_version = "HTTP/1.1"
    objects = {}
    puts = []

    def log_message(self, *a):
        pass

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            out = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_PUT(self):
        body = self._body()
        Store.objects[self.path] = body
        Store.puts.append(self.path)
        self.send_response(200)
        self.send_header("ETag", '"%d"' % len(body))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        body = Store.objects.get(self.path)
        if body is None:
            self.send_response(404)
            body = b"<Error><Code>NoSuchKey</Code></Error>"
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Store)
        cls.server.daemon_threads = True
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def setUp(self):
        Store.objects.clear()
        Store.puts.clear()
        self.proxy = s3proxy.FaultProxy(self.server.server_address, slow_delay=(0.6, 0.6),
                                        trickle_bytes=16, seed=1).start()

    def tearDown(self):
        self.proxy.stop()

    def conn(self, timeout=5):
        c = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=timeout)
        self.addCleanup(c.close)
        return c

    def put(self, key, body=b"data", conn=None, headers=None):
        c = conn or self.conn()
        try:
            c.request("PUT", "/bucket/" + key, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read(), r.getheader("Content-Type")
        finally:
            if conn is None:
                c.close()

    def test_passes_requests_on_a_kept_alive_connection(self):
        c = self.conn()
        for i in range(3):
            self.assertEqual(self.put("k%d" % i, b"v%d" % i, conn=c)[0], 200)
        c.request("GET", "/bucket/k1")
        r = c.getresponse()
        self.assertEqual((r.status, r.read()), (200, b"v1"))
        self.assertEqual(Store.objects["/bucket/k2"], b"v2")
        self.assertEqual(self.proxy.counts(), {"passed": 4})

    def test_chunked_body_and_expect_100_continue(self):
        c = self.conn()
        c.request("PUT", "/bucket/chunked", body=iter([b"abc", b"defg"]),
                  headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
        self.assertEqual(c.getresponse().status, 200)
        self.assertEqual(Store.objects["/bucket/chunked"], b"abcdefg")
        # Expect: 100-continue: the proxy says continue, the body follows, S3's answer comes back.
        s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5)
        s.sendall(b"PUT /bucket/expect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 100"))
        s.sendall(b"hello")
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += s.recv(1000)
        s.close()
        self.assertTrue(reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200"), reply)
        self.assertEqual(Store.objects["/bucket/expect"], b"hello")

    def test_5xx_answers_an_s3_error_and_never_reaches_s3(self):
        self.proxy.set_fault("5xx")
        c = self.conn()
        for i in range(6):  # the connection stays usable
            status, body, ctype = self.put("e%d" % i, conn=c)
            self.assertIn(status, (500, 503))
            self.assertIn(b"<Error><Code>", body)
            self.assertEqual(ctype, "application/xml")
        self.assertEqual(Store.puts, [])
        self.proxy.clear()
        self.assertEqual(self.put("ok", conn=c)[0], 200)
        self.assertEqual(self.proxy.counts(), {"5xx": 6, "passed": 1})

    def test_4xx_refuses_for_good(self):
        self.proxy.set_fault("4xx")
        status, body, _ = self.put("refused")
        self.assertEqual(status, 400)
        self.assertIn(b"<Code>InvalidArgument</Code>", body)
        self.assertEqual(Store.puts, [])

    def test_5xx_after_stores_the_object_then_answers_an_error(self):
        self.proxy.set_fault("5xx-after")
        status, body, _ = self.put("stored", b"payload")
        self.assertIn(status, (500, 503))
        self.assertEqual(Store.objects["/bucket/stored"], b"payload")

    def test_reset_before_and_after_s3(self):
        for mode, reached in (("reset", False), ("reset-after", True)):
            self.proxy.set_fault(mode)
            with self.assertRaises(ConnectionResetError):
                self.put(mode)
            self.assertEqual("/bucket/" + mode in Store.objects, reached, mode)
        self.proxy.clear()
        self.assertEqual(self.put("after")[0], 200)

    def test_hang_never_answers_and_stays_hung_after_clear(self):
        self.proxy.set_fault("hang")
        hung = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=1)
        hung.sendall(b"PUT /bucket/h HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        with self.assertRaises(socket.timeout):
            self.put("h2", conn=self.conn(timeout=1))
        self.proxy.clear()
        with self.assertRaises(socket.timeout):
            hung.recv(10)  # a black hole does not give back what it swallowed
        self.assertEqual(self.put("fresh")[0], 200)  # new connections pass again
        self.assertNotIn("/bucket/h", Store.objects)
        self.assertNotIn("/bucket/h2", Store.objects)
        hung.close()

    def test_slow_answers_late_but_whole(self):
        self.proxy.set_fault("slow")
        t = time.monotonic()
        status, _, _ = self.put("slow", b"x" * 1000)
        self.assertEqual(status, 200)
        # 0.6 s delay, then the head trickled 16 bytes per 0.1 s.
        self.assertGreater(time.monotonic() - t, 1.0)
        self.assertEqual(Store.objects["/bucket/slow"], b"x" * 1000)

    def test_rate_hits_a_share_of_requests(self):
        self.proxy.set_fault("5xx", rate=0.5)
        c = self.conn()
        statuses = [self.put("r%d" % i, conn=c)[0] for i in range(40)]
        faulted = sum(1 for s in statuses if s != 200)
        self.assertTrue(5 < faulted < 35, statuses)
        self.assertEqual(len(Store.puts), 40 - faulted)
        self.assertEqual(self.proxy.counts(), {"5xx": faulted, "passed": 40 - faulted})

    def test_upstream_down_is_a_502(self):
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        dead.close()
        p = s3proxy.FaultProxy(("127.0.0.1", port)).start()
        try:
            c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
            c.request("PUT", "/b/k", body=b"x")
            self.assertEqual(c.getresponse().status, 502)
            self.assertEqual(p.counts().get("upstream-error"), 1)
        finally:
            p.stop()

    def test_unknown_mode_is_refused(self):
        with self.assertRaises(ValueError):
            self.proxy.set_fault("teapot")


class LocalNameTest(unittest.TestCase):
    def test_keys_become_safe_relative_paths(self):
        self.assertEqual(s3bucket.local_name("test.jepsen/2026/11/27/1-2.log.gz"),
                         os.path.join("test.jepsen", "2026", "11", "27", "1-2.log.gz"))
        self.assertEqual(s3bucket.local_name("dead-letter/3-4.log.gz"), os.path.join("dead-letter", "3-4.log.gz"))
        odd = s3bucket.local_name("../x//./y")
        self.assertNotIn("..", odd.split(os.sep))
        self.assertNotIn(".", odd.split(os.sep))
        self.assertNotIn("", odd.split(os.sep))
        long = s3bucket.local_name("t" * 300 + "/1-2.log.gz")
        self.assertTrue(all(len(seg) <= 240 for seg in long.split(os.sep)))
        self.assertTrue(s3bucket.local_name("t" * 300 + ".log.gz").endswith(".log.gz"))


if __name__ == "__main__":
    unittest.main()
