"""Poison for the lograft fault harness: the `poison` nemesis's senders and the accounting of
what they sent.

Owns: what real traffic brings to a Forward port besides clean chunks, sent while a poison
window is open to the harness's entry points (forwarders, else aggregators) —

- an oversized chunk (a PackedForward frame larger than in_forward's frame limit),
- very long tags (64 KiB) and unsafe tags (`test.../../etc`, NUL, control characters, non-UTF-8),
- records nested deeper than the depth limit, and events with a bad time or a record that is
  not a map, mixed with valid events into the workload's own tag,
- malformed frames (random bytes, truncated msgpack, wrong types),
- idle connections held open and a slow sender dribbling a valid chunk a byte at a time;

the record of every send (`WORKDIR/poison.jsonl`, one line per send: its events, what the node
was expected to do and what it did), and `account`, which finds poison in the bucket and its
dead-letter area and says what became of every poison event.

Every poison event's record is `{"poison": ID, ...}` with ID `<run id>-p<send>-<n>`: no
workload event has a `poison` key, and every poison frame has a chunk id
(`<run id>-p<send>`) of its own, so poison cannot collide with the workload's events. Each
event carries its expectation: `store` (if its frame is acked, it must be in the bucket or the
dead-letter area exactly once; if not, at most once) or `refuse` (the node must never store it:
a record nested too deep, a bad time, an event inside a frame the node must close on).

Must not: start, stop or signal hosts, touch the firewall, judge innocent events (the checker
in lograft_jepsen.py does), or send anything off 127.0.0.0/8. Stdlib only.
"""

import collections
import gzip
import json
import os
import random
import re
import socket
import struct
import threading
import time

# Tags the cluster config routes to the bucket (`<match test.**>`); never a newline: `**`
# does not match one, so such a tag would be dropped as unmatched (Fluentd semantics).
UNSAFE_TAGS = (
    ("dot-dot-slash", "test.../../etc"),
    ("nul", "test.poison.nul\x00byte"),
    ("control", "test.poison.ctl\x01\x1b[31m\x7f\t\rend"),
    ("backslash", "test.poison.back\\..\\..\\x"),
    ("utf8", "test.poison.utf8.\u00e9\u2713\U0001f4a9"),
    ("empty-parts", "test.."),
)
DEEP_LEVELS = 100  # nesting levels of a refused record (the limit is about 62, record_depth.rs)
NEAR_LIMIT_LEVELS = 40  # nesting levels of a record that must be accepted
HARD_MAX_FRAME_SIZE = 512 * 1024 * 1024  # src/forward/frame.rs: the frame limit without chunk_size_limit


# ---------------------------------------------------------------------------------------------
# msgpack: a general encoder (poison needs nesting, arbitrary bytes as str, wrong types)


class Str(bytes):
    """Bytes sent with a msgpack str marker (for tags that are not valid UTF-8)."""


class Raw(bytes):
    """Bytes already msgpack-encoded, inserted as they are."""


class EventTime:
    def __init__(self, t=None):
        t = time.time() if t is None else t
        self.sec, self.nsec = int(t), int((t % 1) * 1e9)


def _sized(n, small, fixed, wide):
    """Header for a length: `small(n)` when it fits, else the first (limit, marker, fmt) of
    `wide` that fits."""
    if fixed is not None and n < fixed:
        return small(n)
    for limit, marker, fmt in wide:
        if n < limit:
            return bytes([marker]) + struct.pack(fmt, n)
    raise ValueError("too long for msgpack: %d" % n)


def pack(v):
    if v is None:
        return b"\xc0"
    if v is True or v is False:
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, Raw):
        return bytes(v)
    if isinstance(v, EventTime):
        return b"\xd7\x00" + struct.pack(">II", v.sec, v.nsec)
    if isinstance(v, int):
        if 0 <= v < 0x80:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack(">b", v)
        if v >= 0:
            return _sized(v, None, None, ((1 << 8, 0xCC, ">B"), (1 << 16, 0xCD, ">H"),
                                           (1 << 32, 0xCE, ">I"), (1 << 64, 0xCF, ">Q")))
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, (str, Str)):
        b = v.encode() if isinstance(v, str) else bytes(v)
        return _sized(len(b), lambda n: bytes([0xA0 | n]), 32,
                      ((1 << 8, 0xD9, ">B"), (1 << 16, 0xDA, ">H"), (1 << 32, 0xDB, ">I"))) + b
    if isinstance(v, (bytes, bytearray)):
        return _sized(len(v), None, None,
                      ((1 << 8, 0xC4, ">B"), (1 << 16, 0xC5, ">H"), (1 << 32, 0xC6, ">I"))) + bytes(v)
    if isinstance(v, (list, tuple)):
        head = _sized(len(v), lambda n: bytes([0x90 | n]), 16, ((1 << 16, 0xDC, ">H"), (1 << 32, 0xDD, ">I")))
        return head + b"".join(pack(x) for x in v)
    if isinstance(v, dict):
        head = _sized(len(v), lambda n: bytes([0x80 | n]), 16, ((1 << 16, 0xDE, ">H"), (1 << 32, 0xDF, ">I")))
        return head + b"".join(pack(k) + pack(x) for k, x in v.items())
    raise TypeError("cannot pack %r" % type(v))


def nested(levels, leaf=1):
    """A value `levels` containers deep, alternating maps and arrays."""
    v = leaf
    for i in range(levels):
        v = {"a": v} if i % 2 else [v]
    return v


# ---------------------------------------------------------------------------------------------
# one send


class Send:
    """One poison frame (or connection) sent to one entry point, and what came of it."""

    def __init__(self, poisoner, case, tag=None):
        p = poisoner
        with p.lock:
            p.counter += 1
            self.n = p.counter
        self.p = p
        self.case = case
        self.id = "%s-p%d" % (p.run_id, self.n)
        self.tag = tag
        self.events = []  # [poison id, "store" | "refuse"]
        self.expect = "either"  # what the frame must get: "either" (ack or refusal) or "closed"
        self.outcome = None
        self.rec = dict(send=self.id, case=case, window=p.window)

    def event(self, expect, **extra):
        """A poison record (its id registered with the expectation)."""
        pid = "%s-%d" % (self.id, len(self.events))
        self.events.append([pid, expect])
        rec = {"poison": pid, "case": self.case}
        rec.update(extra)
        return rec

    def entry(self, expect, t=None, **extra):
        return pack([EventTime() if t is None else t, self.event(expect, **extra)])

    def packed(self, entries, count, tag=None, chunk=True):
        tag = self.tag if tag is None else tag
        opts = {"size": count}
        if chunk:
            opts["chunk"] = self.id
        return pack([tag, bytes(entries), opts])

    def connect(self):
        """A socket to a random entry point; None (recorded) when it cannot connect."""
        host = self.p.pick()
        self.rec.update(slot=host.slot, host=host.node_id, t0=self.p.now())
        try:
            s = socket.create_connection((host.ip, host.fwd_port), timeout=self.p.connect_timeout)
        except OSError as e:
            self.finish("not-connected", error=type(e).__name__)
            return None
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(self.p.ack_timeout)
        return s

    def send(self, frame, half_close=False, write=None, info=None):
        """Connect, write `frame` (or call `write(sock)`), optionally shut down our side (the
        node sees the stream end), then wait for the ack or the close. `info`: a dict the
        writer may fill, recorded with the outcome. False when it could not connect."""
        s = self.connect()
        if s is None:
            return False
        info = {} if info is None else info
        if frame is not None:
            self.rec["frame_bytes"] = len(frame)
        try:
            try:
                (write or (lambda sock: sock.sendall(frame)))(s)
                if half_close:
                    s.shutdown(socket.SHUT_WR)
            except OSError as e:
                self.finish(kind_of(e), phase="write", **info)
                return True
            self.finish(*self.await_reply(s), **info)
        finally:
            s.close()
        return True

    def await_reply(self, s):
        """(outcome, detail...) after the frame went out: acked, closed, reset, timeout or
        bad-reply."""
        want = (pack({"ack": self.id}), pack({"ack": self.id.encode()}))
        buf = b""
        while True:
            try:
                data = s.recv(4096)
            except OSError as e:
                return (kind_of(e),)
            if not data:
                return ("closed",) if not buf else ("bad-reply", buf[:64].hex())
            buf += data
            if buf in want:
                return ("acked",)
            if not any(w.startswith(buf) for w in want):
                return ("bad-reply", buf[:64].hex())

    def finish(self, outcome, *detail, **extra):
        self.outcome = outcome
        self.rec.update(outcome=outcome, t1=self.p.now(), expect=self.expect, events=self.events)
        if self.tag is not None:
            tb = self.tag.encode() if isinstance(self.tag, str) else bytes(self.tag)
            self.rec.update(tag_bytes=len(tb), tag=repr(tb[:80]) + ("..." if len(tb) > 80 else ""))
        if detail:
            self.rec["detail"] = detail[0]
        self.rec.update(extra)
        self.p.write(self.rec)


def kind_of(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    return type(e).__name__


# ---------------------------------------------------------------------------------------------
# the poisoner: a window's threads


class Poisoner:
    """Sends poison while a window is open (`start` .. `stop`): one thread through the catalogue
    of poison frames (each on a connection of its own, to a random entry point), one slow
    sender, and idle connections held until the window closes."""

    def __init__(self, run_id, tag, entry_points, path, args, rng, clock):
        self.run_id = run_id
        self.entry_points = entry_points  # () -> {slot: host}
        self.path = path
        self.rng = random.Random(rng.random())
        self.now = lambda: round(clock(), 3)
        self.tag = tag  # the workload's tag: deep records and malformed frames go into its stream
        self.tag_bytes = args.poison_tag_bytes
        self.idle = args.poison_idle
        self.slow_seconds = args.poison_slow_seconds
        self.chunk_size_limit = args.poison_chunk_size_limit
        self.connect_timeout = args.connect_timeout
        self.ack_timeout = args.ack_timeout
        self.lock = threading.Lock()
        self.counter = 0
        self.window = 0
        self.sends = []
        self.stop_event = threading.Event()
        self.threads = []
        self.window_stats = None
        open(self.path, "a").close()  # a run with the nemesis has a (maybe empty) poison log

    def pick(self):
        hosts = self.entry_points()
        with self.lock:
            return hosts[self.rng.choice(sorted(hosts))]

    def write(self, rec):
        with self.lock:
            self.sends.append(rec)
            self.window_stats[rec["outcome"]] += 1
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def start(self):
        self.window += 1
        self.window_stats = collections.Counter()
        self.stop_event.clear()
        self.threads = [threading.Thread(target=self._guard, args=(f,), name="poison-%s" % f.__name__,
                                         daemon=True)
                        for f in (self.burst, self.slow, self.hold_idle)]
        for t in self.threads:
            t.start()
        return dict(window=self.window, entry_points=len(self.entry_points()))

    def stop(self, timeout=None):
        """Close the window: senders finish the frame in flight (and wait for its answer);
        returns this window's counts."""
        self.stop_event.set()
        deadline = time.monotonic() + (timeout or self.ack_timeout + 15)
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        self.threads = []
        with self.lock:
            out = dict(window=self.window, **dict(self.window_stats or {}))
        if stuck:
            out["stuck"] = stuck
        return out

    def _guard(self, f):
        try:
            f()
        except Exception as e:  # noqa: BLE001 - a sender bug must not kill the run; it is recorded
            self.write(dict(send=None, case=f.__name__, window=self.window, outcome="harness-error",
                            error="%s: %s" % (type(e).__name__, e), t1=self.now(), events=[]))

    # -- the catalogue --------------------------------------------------------------------------

    def burst(self):
        cases = [self.oversized, self.long_tag, self.unsafe_tags, self.deep, self.bad_events,
                 self.malformed]
        while not self.stop_event.is_set():
            for case in self.rng.sample(cases, len(cases)):
                if self.stop_event.is_set():
                    return
                self._guard(case)
            self.stop_event.wait(0.5)  # mixed into the stream, not a flood

    def oversized(self):
        """Frames larger than in_forward's frame limit (`chunk_size_limit`; without one, the
        512 MiB cap). Always a PackedForward frame whose entries header declares 1 MiB more
        than the limit, the entries streamed until the node closes (at most 8 MiB, then our
        side is shut: a node still reading sees the frame end early). With a configured limit
        of at most 64 MiB also a complete Forward-mode frame just over it (an array of entries:
        no header says its size, the node must count). Expected: closed, no ack, nothing
        stored."""
        limit = self.chunk_size_limit or HARD_MAX_FRAME_SIZE
        s = Send(self, "oversized:declared", self.tag)
        s.expect = "closed"
        entry = s.entry("refuse", msg="x" * 200)
        declared = limit + (1 << 20)
        head = b"\x93" + pack(s.tag) + b"\xc6" + struct.pack(">I", declared)
        block = entry * max(1, (64 << 10) // len(entry))
        info = dict(sent_bytes=0, declared_bytes=declared)

        def stream(sock):
            sock.sendall(head)
            while info["sent_bytes"] < min(declared, 8 << 20):
                sock.sendall(block)
                info["sent_bytes"] += len(block)
        s.send(None, half_close=True, write=stream, info=info)
        if self.chunk_size_limit and self.chunk_size_limit <= (64 << 20):
            s = Send(self, "oversized:forward-mode", self.tag)
            s.expect = "closed"
            entry = s.entry("refuse", msg="x" * 200)
            n = limit // len(entry) + 64
            frame = b"\x93" + pack(s.tag) + b"\xdd" + struct.pack(">I", n) + entry * n + pack({"chunk": s.id})
            s.send(frame)

    def long_tag(self):
        """A tag of `--poison-tag-bytes` (64 KiB) under `test.`: acked and stored under its
        safe name (or dead-lettered), or refused."""
        tag = "test.poison.long." + "L" * max(0, self.tag_bytes - len("test.poison.long."))
        s = Send(self, "long-tag", tag)
        s.send(s.packed(b"".join(s.entry("store", i=i) for i in range(3)), 3))

    def unsafe_tags(self):
        """Path-like, NUL, control characters, non-ASCII, and a tag that is not UTF-8 (sent
        with a str marker): each acked and stored under its safe name, or refused."""
        for name, tag in UNSAFE_TAGS + (("non-utf8", Str(b"test.poison.bad\xff\xfe\xc3(")),):
            if self.stop_event.is_set():
                return
            s = Send(self, "unsafe-tag:" + name, tag)
            s.send(s.packed(b"".join(s.entry("store", i=i) for i in range(2)), 2))

    def deep(self):
        """Into the workload's own tag: a record nested deeper than the depth limit next to a
        valid one (PackedForward), a deep record alone (Message mode), and one nested 40 levels
        (under the limit). The deep ones must never be stored (dropped under
        skip_invalid_event before the ack, or the frame refused); the others are stored if
        acked."""
        s = Send(self, "deep:packed", self.tag)
        entries = s.entry("store") + s.entry("refuse", deep=nested(DEEP_LEVELS))
        s.send(s.packed(entries, 2))
        s = Send(self, "deep:message", self.tag)
        s.send(pack([s.tag, EventTime(), s.event("refuse", deep=nested(DEEP_LEVELS + 1)), {"chunk": s.id}]))
        s = Send(self, "deep:near-limit", self.tag)
        s.send(pack([s.tag, [[EventTime(), s.event("store", deep=nested(NEAR_LIMIT_LEVELS))]],
                     {"chunk": s.id}]))

    def bad_events(self):
        """Events of the wrong shape among valid ones: a time that is a string, a record that
        is an array (untraceable, so not counted). Dropped before the ack; the valid event is
        stored if acked."""
        s = Send(self, "bad-event", self.tag)
        entries = (s.entry("store") + s.entry("refuse", t="yesterday")
                   + pack([EventTime(), ["poison", "not a map"]]))
        s.send(s.packed(entries, 3))

    def malformed(self):
        """Frames the node must close the connection on, with nothing acked or stored."""
        cases = [
            ("random-bytes", lambda s: bytes(self.rng.getrandbits(8) for _ in range(256)), True),
            ("truncated", lambda s: (lambda f: f[:self.rng.randrange(3, len(f) - 1)])(
                s.packed(s.entry("refuse") + s.entry("refuse"), 2)), True),
            ("bin-tag", lambda s: pack([s.tag.encode(), s.entry("refuse"), {"chunk": s.id}]), False),
            ("option-not-a-map", lambda s: pack([s.tag, s.entry("refuse"), "chunk"]), False),
            ("chunk-not-a-string", lambda s: pack([s.tag, s.entry("refuse"), {"chunk": 12345}]), False),
            ("arity-1", lambda s: pack([s.tag]), False),
            ("map-frame", lambda s: pack({"tag": s.tag, "chunk": s.id}), False),
            ("truncated-entries", lambda s: pack([s.tag, (s.entry("refuse") + s.entry("refuse"))[:-5],
                                                  {"size": 2, "chunk": s.id}]), False),
        ]
        for name, build, half_close in cases:
            if self.stop_event.is_set():
                return
            s = Send(self, "malformed:" + name, self.tag)
            s.expect = "closed"
            # Incomplete input leaves the node waiting for the rest: end our side of the stream.
            s.send(build(s), half_close=half_close)

    def slow(self):
        """A valid chunk of poison events dribbled a byte at a time over about
        `--poison-slow-seconds`; when the window closes the rest goes at once. Stored if acked."""
        while not self.stop_event.is_set():
            s = Send(self, "slow", self.tag)
            frame = s.packed(b"".join(s.entry("store", i=i, msg="s" * 20) for i in range(16)), 16)
            gap = self.slow_seconds / len(frame)

            def dribble(sock):
                for i in range(len(frame)):
                    if self.stop_event.is_set():
                        sock.sendall(frame[i:])
                        return
                    sock.sendall(frame[i:i + 1])
                    time.sleep(gap)
            if not s.send(frame, write=dribble):
                self.stop_event.wait(0.5)

    def hold_idle(self):
        """`--poison-idle` connections spread over the entry points, held until the window
        closes: half send nothing, half the first bytes of a frame and no more. Then counts
        those the node closed early (it may: `idle_timeout`), as one record."""
        socks = []
        s = Send(self, "idle")
        s.rec["t0"] = self.now()
        for i in range(self.idle):
            host = self.pick()
            try:
                c = socket.create_connection((host.ip, host.fwd_port), timeout=self.connect_timeout)
                if i % 2:
                    c.sendall(b"\x93" + pack(self.tag)[:4])
                socks.append(c)
            except OSError:
                pass
        self.stop_event.wait()
        closed = 0
        for c in socks:
            try:
                c.setblocking(False)
                if c.recv(1, socket.MSG_PEEK) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
            c.close()
        s.finish("held", opened=len(socks), wanted=self.idle, closed_by_node=closed)


# ---------------------------------------------------------------------------------------------
# accounting


_TEXT_ID = re.compile(rb'"poison":"([A-Za-z0-9-]+)"')
_RAW_ID = re.compile(rb"\xa6poison([\xa0-\xbf])")  # dead-letter raw entries: fixstr key and id


def poison_ids(data):
    """Every poison id in an object's (decompressed) bytes: out_file lines (JSON records, also
    when a tag holds tabs or control characters) or a raw dead-letter batch (msgpack)."""
    ids = [m.group(1).decode() for m in _TEXT_ID.finditer(data)]
    for m in _RAW_ID.finditer(data):
        n = m.group(1)[0] & 0x1F
        ids.append(data[m.end():m.end() + n].decode("ascii", "replace"))
    return ids


def is_dead_letter(rel):
    return rel.split(os.sep, 1)[0] == "dead-letter"


def scan_bucket(bucket):
    """{poison id: [area, ...]} over every object of the bucket (area: bucket or dead-letter)."""
    where = collections.defaultdict(list)
    for root, _, files in os.walk(bucket):
        for name in files:
            p = os.path.join(root, name)
            rel = os.path.relpath(p, bucket)
            try:
                with (gzip.open if name.endswith(".gz") else open)(p, "rb") as f:
                    data = f.read()
            except (OSError, EOFError):
                continue
            for pid in poison_ids(data):
                where[pid].append("dead-letter" if is_dead_letter(rel) else "bucket")
    return where


def load_sends(workdir):
    """The poison log of a kept work dir; None for a run without the poison nemesis."""
    path = os.path.join(workdir, "poison.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def account(bucket, sends):
    """What became of every poison send and event. Failures: an acked `store` event not found
    (`acked_missing`), any poison event found more than once (`duplicated`), a `refuse` event
    found at all (`refused_but_stored`). `unexpected_acks`: frames acked that the node must
    close on (an anomaly)."""
    where = scan_bucket(bucket)
    out = collections.Counter()
    by_case = collections.defaultdict(collections.Counter)
    samples = collections.defaultdict(list)
    known = set()
    for r in sends:
        outcome = r.get("outcome")
        c = by_case[r.get("case")]
        c[outcome] += 1
        if outcome in ("not-connected", "held", "harness-error"):
            out[outcome] += 1
            if outcome == "held":
                out["idle_opened"] += r.get("opened", 0)
                out["idle_closed_by_node"] += r.get("closed_by_node", 0)
            continue
        out["sent"] += 1
        acked = outcome == "acked"
        out["acked" if acked else "refused_before_ack"] += 1
        if acked and r.get("expect") == "closed":
            out["unexpected_acks"] += 1
            samples["unexpected_acks"].append(r["send"])
        if outcome == "timeout" and r.get("expect") == "closed":
            out["not_closed"] += 1  # neither acked nor closed within the ack timeout
            samples["not_closed"].append(r["send"])
        for pid, expect in r.get("events", []):
            known.add(pid)
            found = where.get(pid, [])
            out["events"] += 1
            if len(found) > 1:
                out["duplicated"] += 1
                samples["duplicated"].append(dict(id=pid, case=r["case"], found=found))
            if expect == "refuse":
                out["refuse_events"] += 1
                if found:
                    out["refused_but_stored"] += 1
                    samples["refused_but_stored"].append(dict(id=pid, case=r["case"], found=found))
                elif acked:
                    out["dropped_from_acked_frames"] += 1
                continue
            if acked:
                out["acked_events"] += 1
                if not found:
                    out["acked_missing"] += 1
                    c["acked_missing"] += 1
                    samples["acked_missing"].append(dict(id=pid, case=r["case"], send=r["send"],
                                                         slot=r.get("slot"), tag=r.get("tag")))
                else:
                    out["acked_found"] += 1
                    out["acked_found_" + found[0].replace("-", "_")] += 1
            elif found:
                out["unacked_found"] += 1
    stray = sorted(pid for pid in where if pid not in known)
    res = dict(out)
    for k in ("sent", "acked", "refused_before_ack", "events", "acked_events", "acked_found",
              "acked_found_bucket", "acked_found_dead_letter", "acked_missing", "duplicated",
              "refused_but_stored", "unexpected_acks"):
        res.setdefault(k, 0)
    res.update(stray_in_bucket=len(stray), stray_sample=stray[:10],
               by_case={k: dict(v) for k, v in sorted(by_case.items(), key=lambda kv: str(kv[0]))},
               samples={k: v[:10] for k, v in samples.items()})
    return res


def failures(res):
    """The poison failures that make a run INVALID."""
    return {k: res.get(k, 0) for k in ("acked_missing", "duplicated", "refused_but_stored")
            if res.get(k, 0)}


def windows(ops):
    """[(t0, t1)] of the poison windows in the nemesis's records."""
    out, t0 = [], None
    for o in ops:
        if o.get("kind") != "poison":
            continue
        if o.get("phase") == "start":
            t0 = o["t"]
        elif o.get("phase") == "heal" and t0 is not None:
            out.append((t0, o["t"]))
            t0 = None
    return out


def innocent_acks_in_windows(ops, history):
    """[(t0, t1, innocent chunks acked in the window)] for each poison window."""
    done = sorted(r["t_complete"] for r in history if r.get("outcome") == "ok" and r.get("t_complete") is not None)
    return [(t0, t1, sum(1 for t in done if t0 <= t <= t1)) for t0, t1 in windows(ops)]


def summary_lines(res):
    g = res.get
    slow = (g("by_case") or {}).get("slow", {})
    return [
        "poison sends:      %d sent (%d events), %d acked, %d refused before the ack; %d not "
        "connected" % (g("sent", 0), g("events", 0), g("acked", 0), g("refused_before_ack", 0),
                       g("not-connected", 0)),
        "poison acked:      %d events: %d found (%d bucket, %d dead-letter); %d refused events "
        "dropped from acked frames" % (
            g("acked_events", 0), g("acked_found", 0), g("acked_found_bucket", 0),
            g("acked_found_dead_letter", 0), g("dropped_from_acked_frames", 0)),
        "poison failures:   %d acked-but-missing, %d duplicated, %d refused-but-stored" % (
            g("acked_missing", 0), g("duplicated", 0), g("refused_but_stored", 0)),
        "poison other:      %d unexpected acks, %d not closed in time, %d unacked found once, "
        "%d stray ids; idle: %d held (%d closed by the node); slow: %s" % (
            g("unexpected_acks", 0), g("not_closed", 0), g("unacked_found", 0),
            g("stray_in_bucket", 0), g("idle_opened", 0), g("idle_closed_by_node", 0),
            ", ".join("%d %s" % (n, k) for k, n in sorted(slow.items())) or "none"),
    ]
