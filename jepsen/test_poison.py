"""Tests of jepsen/poison.py (the poison nemesis) and of the harness checker's handling of poison,
without lograft: the encoder against the harness's own msgpack helpers, the nesting constants
against record_depth.rs's rule, finding poison ids in out_file lines and raw dead-letter
batches, the accounting on a synthetic bucket (found, missing, duplicated, refused-but-stored,
unexpected acks), the innocent checker passing over poison, and one poison window against a
fake Forward server on loopback (every send recorded, poison.jsonl written).

    python3 -m unittest jepsen/test_poison.py      # from the repo root
"""

import argparse
import gzip
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lograft_jepsen  # noqa: E402
import poison  # noqa: E402


def rmpv_too_deep(v, level=0, budget=128):
    """record_depth.rs's rule: a value at nesting level k is readable iff 2k + cost <= budget
    (cost 2 for maps and arrays, 3 for str, 1 for ints)."""
    cost = 2 if isinstance(v, (dict, list)) else 3 if isinstance(v, str) else 1
    if 2 * level + cost > budget:
        return True
    children = list(v.values()) + list(v.keys()) if isinstance(v, dict) else v if isinstance(v, list) else []
    return any(rmpv_too_deep(c, level + 1, budget) for c in children)


def gz(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(data)


def line(tag, record):
    return b"2026-11-27T07:00:00+00:00\t" + tag + b"\t" + json.dumps(record, separators=(",", ":")).encode() + b"\n"


def send(sid, outcome, events, expect="either", case="long-tag"):
    return dict(send=sid, case=case, window=1, outcome=outcome, expect=expect, events=events)


class PackTest(unittest.TestCase):
    def test_agrees_with_the_harness_encoder_and_decoder(self):
        for n in (0, 5, 31, 32, 255, 256, 65535, 65536):
            s = "t" * n
            self.assertEqual(poison.pack(s), lograft_jepsen.mp_str(s))
            self.assertEqual(poison.pack(s.encode()), lograft_jepsen.mp_bin(s.encode()))
        for v in (0, 127, 128, 255, 256, 65535, 65536, 1 << 32):
            self.assertEqual(poison.pack(v), lograft_jepsen.mp_uint(v))
        v = {"a": [1, 2, {"b": "c"}], "size": 3, "chunk": "x" * 40}
        got, end = lograft_jepsen.mp_decode(poison.pack(v))
        self.assertEqual(end, len(poison.pack(v)))
        self.assertEqual(got, {b"a": [1, 2, {b"b": b"c"}], b"size": 3, b"chunk": b"x" * 40})
        self.assertEqual(poison.pack(poison.Str(b"\xff")), b"\xa1\xff")
        self.assertEqual(poison.pack(-1), b"\xff")
        self.assertEqual(poison.pack([1] * 20)[:3], b"\xdc\x00\x14")

    def test_deep_records_are_over_the_limit_and_near_limit_ones_under_it(self):
        rec = lambda levels: {"poison": "id", "case": "deep", "deep": poison.nested(levels)}  # noqa: E731
        self.assertTrue(rmpv_too_deep(rec(poison.DEEP_LEVELS)))
        self.assertTrue(rmpv_too_deep(rec(poison.DEEP_LEVELS + 1)))
        self.assertFalse(rmpv_too_deep(rec(poison.NEAR_LIMIT_LEVELS)))
        # and with room to spare: ten more levels are still fine
        self.assertFalse(rmpv_too_deep(rec(poison.NEAR_LIMIT_LEVELS + 10)))


class AccountTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.bucket = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_ids_in_text_lines_and_raw_batches(self):
        text = line(b"test.poison.ctl\x01\t\rend", {"poison": "j1-p3-0", "i": 0})
        text += line(b"test.jepsen", {"seq": 4, "chunk": "c", "msg": "x"})
        self.assertEqual(poison.poison_ids(text), ["j1-p3-0"])
        raw = poison.pack([poison.EventTime(), {"poison": "j1-p4-1", "x": 1}])
        raw += poison.pack([poison.EventTime(), {"seq": 9}])
        self.assertEqual(poison.poison_ids(raw), ["j1-p4-1"])

    def test_account(self):
        b = self.bucket
        gz(os.path.join(b, "test.poison.long.LLL~abc", "2026", "11", "27", "1-2.log.gz"),
           line(b"test.poison.long." + b"L" * 100, {"poison": "r-p1-0"})
           + line(b"test.poison.long." + b"L" * 100, {"poison": "r-p1-1"})
           + line(b"t", {"poison": "r-p2-0"}) + line(b"t", {"poison": "r-p2-0"})
           + line(b"t", {"poison": "r-p5-1"}) + line(b"t", {"poison": "r-p6-0"})
           + line(b"t", {"poison": "zz-p9-9"}))
        gz(os.path.join(b, "dead-letter", "3-3.log.gz"),
           poison.pack([poison.EventTime(), {"poison": "r-p1-2"}]))
        sends = [
            send("r-p1", "acked", [["r-p1-0", "store"], ["r-p1-1", "store"], ["r-p1-2", "store"],
                                   ["r-p1-3", "store"]]),
            send("r-p2", "closed", [["r-p2-0", "store"]]),
            send("r-p5", "acked", [["r-p5-0", "store"], ["r-p5-1", "refuse"], ["r-p5-2", "refuse"]],
                 case="deep:packed"),
            send("r-p6", "acked", [["r-p6-0", "refuse"]], expect="closed", case="malformed:x"),
            send("r-p7", "reset", [["r-p7-0", "refuse"]], expect="closed", case="oversized:declared"),
            send("r-p8", "not-connected", [["r-p8-0", "store"]]),
            dict(send="r-p10", case="idle", window=1, outcome="held", events=[], opened=8, closed_by_node=1),
        ]
        r = poison.account(b, sends)
        self.assertEqual(r["sent"], 5)
        self.assertEqual(r["acked"], 3)
        self.assertEqual(r["refused_before_ack"], 2)
        self.assertEqual(r["not-connected"], 1)
        self.assertEqual(r["acked_events"], 5)  # p1: 4, p5: 1
        self.assertEqual(r["acked_found"], 3)
        self.assertEqual(r["acked_found_bucket"], 2)
        self.assertEqual(r["acked_found_dead_letter"], 1)
        self.assertEqual(r["acked_missing"], 2)  # r-p1-3, r-p5-0
        self.assertEqual(sorted(m["id"] for m in r["samples"]["acked_missing"]), ["r-p1-3", "r-p5-0"])
        self.assertEqual(r["duplicated"], 1)  # r-p2-0, unacked but stored twice
        self.assertEqual(r["refused_but_stored"], 2)  # r-p5-1, r-p6-0
        self.assertEqual(r["dropped_from_acked_frames"], 1)  # r-p5-2
        self.assertEqual(r["unexpected_acks"], 1)
        self.assertEqual(r["stray_in_bucket"], 1)
        self.assertEqual(r["idle_opened"], 8)
        self.assertEqual(poison.failures(r), dict(acked_missing=2, duplicated=1, refused_but_stored=2))
        self.assertEqual(poison.failures(poison.account(b, [])), {})
        self.assertEqual(len(poison.summary_lines(r)), 4)

    def test_innocent_checker_passes_over_poison(self):
        b = self.bucket
        gz(os.path.join(b, "test.jepsen", "2026", "11", "27", "1-1.log.gz"),
           line(b"test.jepsen", {"seq": 0, "chunk": "c", "msg": "x"})
           + line(b"test.jepsen", {"poison": "r-p1-0", "case": "deep:packed"})
           + line(b"test.jepsen", {"seq": 1, "chunk": "c", "msg": "x"}))
        gz(os.path.join(b, "test.poison.ctl", "2026", "11", "27", "2-2.log.gz"),
           line(b"test.poison.ctl\nsecond half", {"poison": "r-p2-0"}))
        gz(os.path.join(b, "dead-letter", "3-3.log.gz"),
           poison.pack([poison.EventTime(), {"poison": "r-p3-0"}]) + b"\xff")
        gz(os.path.join(b, "dead-letter", "4-4.log.gz"), line(b"test.jepsen", {"seq": 2, "chunk": "c", "msg": "x"}))
        history = [dict(chunk="c", first=0, count=3, outcome="ok", client=0, node=1, slot=1,
                        t_invoke=1.0, t_complete=1.5, attempts=[])]
        res = lograft_jepsen.check(b, history, 3, [send("r-p1", "acked", [["r-p1-0", "store"]])])
        self.assertEqual(res["lost"], 0)
        self.assertEqual(res["duplicated"], 0)
        self.assertEqual(res["unexpected"], 0)
        self.assertEqual(res["bad_lines"], [])
        self.assertEqual(res["events_in_dead_letter"], 1)
        self.assertEqual(res["poison"]["acked_found"], 1)
        self.assertTrue(lograft_jepsen.verdict(res, False))
        res = lograft_jepsen.check(b, history, 3, [send("r-p1", "acked", [["r-p1-9", "store"]])])
        self.assertFalse(lograft_jepsen.verdict(res, False))

    def test_windows_and_innocent_acks(self):
        ops = [dict(kind="poison", phase="start", t=10.0), dict(kind="kill", phase="start", t=11.0),
               dict(kind="poison", phase="heal", t=14.0), dict(kind="poison", phase="start", t=20.0),
               dict(kind="poison", phase="heal", t=24.0)]
        hist = [dict(outcome="ok", t_complete=t) for t in (9.0, 10.5, 12.0, 30.0)]
        hist.append(dict(outcome="unknown", t_complete=21.0))
        self.assertEqual(poison.innocent_acks_in_windows(ops, hist), [(10.0, 14.0, 2), (20.0, 24.0, 0)])


class FakeForward:
    """A loopback Forward port that acks a frame when its bytes hold a `chunk` option and the
    sender stops (0.2 s of silence or the end of the stream), and otherwise closes."""

    CHUNK = re.compile(rb"\xa5chunk([\xa0-\xbf])")

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(128)
        self.ip, self.fwd_port = self.srv.getsockname()
        self.slot, self.node_id = 1, 1
        self.stop = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(0.2)
        buf = b""
        while len(buf) < (16 << 20):
            try:
                d = c.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not d:
                break
            buf += d
        m = list(self.CHUNK.finditer(buf))
        if m:
            n = m[-1].group(1)[0] & 0x1F
            chunk = buf[m[-1].end():m[-1].end() + n]
            try:
                c.sendall(poison.pack({"ack": poison.Str(chunk)}))
            except OSError:
                pass
        c.close()


class PoisonerTest(unittest.TestCase):
    def test_one_window_against_a_fake_forward_port(self):
        fake = FakeForward()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "poison.jsonl")
            args = argparse.Namespace(poison_tag_bytes=4096, poison_idle=4, poison_slow_seconds=0.3,
                                      poison_chunk_size_limit=1 << 20, connect_timeout=1, ack_timeout=1)
            import random
            p = poison.Poisoner("jt", "test.jepsen", lambda: {1: fake}, path, args,
                                random.Random(1), time.monotonic)
            want = ("oversized:declared", "oversized:forward-mode", "long-tag", "unsafe-tag:nul",
                    "unsafe-tag:non-utf8", "deep:packed", "deep:message", "deep:near-limit",
                    "bad-event", "malformed:random-bytes", "malformed:truncated",
                    "malformed:truncated-entries", "slow")
            self.assertEqual(p.start()["window"], 1)
            deadline = time.monotonic() + 60  # the fake answers after 0.2 s of silence
            while time.monotonic() < deadline and not set(want) <= {r["case"] for r in p.sends}:
                time.sleep(0.2)
            stats = p.stop()
            fake.stop = True
            fake.srv.close()
            self.assertNotIn("stuck", stats)
            with open(path) as f:
                logged = [json.loads(l) for l in f]
            self.assertEqual(logged, p.sends)
            cases = {r["case"] for r in logged}
            for case in want + ("idle",):
                self.assertIn(case, cases)
            self.assertNotIn("harness-error", {r["outcome"] for r in logged})
            acked = [r for r in logged if r["case"] == "long-tag"]
            self.assertEqual(acked[0]["outcome"], "acked")
            self.assertEqual(acked[0]["tag_bytes"], 4096)
            idle = [r for r in logged if r["case"] == "idle"][0]
            self.assertEqual(idle["opened"], 4)
            slow = [r for r in logged if r["case"] == "slow"]
            self.assertTrue(slow and slow[0]["outcome"] == "acked", slow)
            ids = [pid for r in logged for pid, _ in r["events"]]
            self.assertEqual(len(ids), len(set(ids)))
            self.assertTrue(all(len(i) < 32 and re.fullmatch("[A-Za-z0-9-]+", i) for i in ids))


if __name__ == "__main__":
    unittest.main()
