#!/usr/bin/env python3
"""lograft fault harness ("jepsen"): run an aggregator cluster on loopback, inject faults
(kill -9, SIGSTOP, network partition, disk loss, power loss, poison input) while clients write
uniquely numbered events over the Forward protocol, then check that every acknowledged event is
in the bucket exactly once (and account for the poison: jepsen/poison.py).

Stdlib only (the few msgpack shapes needed are encoded by hand). Must run as root for the
partition nemesis (iptables/nft) and for running each node under its own group id. See
jepsen/README.md.
"""

import argparse
import collections
import gzip
import itertools
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback

import poison  # jepsen/poison.py
import s3bucket  # jepsen/s3bucket.py (moto, the fault proxy, reading the bucket back)
import s3proxy  # jepsen/s3proxy.py
import timeline  # jepsen/timeline.py (this script's directory is on sys.path)

TAG = "test.jepsen"
NEMESES = ("kill", "pause", "partition", "disk-loss", "power-loss", "poison", "s3",
           "majority-loss", "double-fault", "leader-disk-loss")
# Nemeses that take a node's disk (followed by the documented replacement procedure).
DISK_LOSSES = ("disk-loss", "leader-disk-loss", "double-fault")
HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------------------------
# logging


_T0 = time.monotonic()
_log_lock = threading.Lock()
_log_file = None


def log(msg):
    line = "[%7.2f] %s" % (time.monotonic() - _T0, msg)
    with _log_lock:
        print(line, flush=True)
        if _log_file:
            _log_file.write(line + "\n")
            _log_file.flush()


# ---------------------------------------------------------------------------------------------
# msgpack: just what Forward needs


def mp_str(s):
    b = s.encode() if isinstance(s, str) else s
    n = len(b)
    if n < 32:
        return bytes([0xA0 | n]) + b
    if n < 0x100:
        return b"\xd9" + bytes([n]) + b
    if n < 0x10000:
        return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b


def mp_bin(b):
    n = len(b)
    if n < 0x100:
        return b"\xc4" + bytes([n]) + b
    if n < 0x10000:
        return b"\xc5" + struct.pack(">H", n) + b
    return b"\xc6" + struct.pack(">I", n) + b


def mp_uint(v):
    if v < 0x80:
        return bytes([v])
    if v < 0x100:
        return b"\xcc" + bytes([v])
    if v < 0x10000:
        return b"\xcd" + struct.pack(">H", v)
    if v < 0x100000000:
        return b"\xce" + struct.pack(">I", v)
    return b"\xcf" + struct.pack(">Q", v)


def mp_map_header(n):
    return bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)


def entries(first, count, chunk_id, pad):
    """Concatenated `[EventTime, {"seq": n, "chunk": id, "msg": pad}]` entries."""
    now = time.time()
    sec, nsec = int(now), int((now % 1) * 1e9)
    et = b"\xd7\x00" + struct.pack(">II", sec, nsec)  # EventTime, fixext8 type 0
    cid = mp_str(chunk_id)
    filler = mp_str("x" * pad)
    out = bytearray()
    for seq in range(first, first + count):
        out += b"\x92" + et + mp_map_header(3)
        out += mp_str("seq") + mp_uint(seq)
        out += mp_str("chunk") + cid
        out += mp_str("msg") + filler
    return bytes(out)


def packed_forward(tag, entries_bytes, count, chunk_id):
    """PackedForward: [tag, bin(entries), {"size": n, "chunk": id}]."""
    return (
        b"\x93" + mp_str(tag) + mp_bin(entries_bytes) + mp_map_header(2)
        + mp_str("size") + mp_uint(count) + mp_str("chunk") + mp_str(chunk_id)
    )


class NeedMore(Exception):
    pass


class NoAck(Exception):
    """The node closed the connection, or answered something other than our ack."""


def mp_decode(buf, i=0):
    """Decode one msgpack value from buf[i:]; returns (value, next index). Raises NeedMore."""

    def need(k):
        if i + k > len(buf):
            raise NeedMore()

    need(1)
    b = buf[i]
    i += 1
    if b < 0x80:
        return b, i
    if b >= 0xE0:
        return b - 0x100, i
    if 0xA0 <= b <= 0xBF:
        n = b & 0x1F
        need(n)
        return bytes(buf[i:i + n]), i + n
    if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
        if b <= 0x8F:
            n = b & 0x0F
        else:
            w = 2 if b == 0xDE else 4
            need(w)
            n = int.from_bytes(buf[i:i + w], "big")
            i += w
        d = {}
        for _ in range(n):
            k, i = mp_decode(buf, i)
            v, i = mp_decode(buf, i)
            d[k] = v
        return d, i
    if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        if b <= 0x9F:
            n = b & 0x0F
        else:
            w = 2 if b == 0xDC else 4
            need(w)
            n = int.from_bytes(buf[i:i + w], "big")
            i += w
        arr = []
        for _ in range(n):
            v, i = mp_decode(buf, i)
            arr.append(v)
        return arr, i
    if b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        w = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[b]
        need(w)
        n = int.from_bytes(buf[i:i + w], "big")
        i += w
        need(n)
        return bytes(buf[i:i + n]), i + n
    if b == 0xC0:
        return None, i
    if b in (0xC2, 0xC3):
        return b == 0xC3, i
    if b in (0xCC, 0xCD, 0xCE, 0xCF):
        w = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}[b]
        need(w)
        return int.from_bytes(buf[i:i + w], "big"), i + w
    raise ValueError("unsupported msgpack byte 0x%02x in reply" % b)


# ---------------------------------------------------------------------------------------------
# helpers


def port_open(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(pred, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


class Stop(Exception):
    """Raised by the SIGTERM handler so every `finally` cleans up."""


# ---------------------------------------------------------------------------------------------
# network partitions
#
# On loopback every outgoing connection has source address 127.0.0.1 whatever address the node
# listens on, so "packets from node X" cannot be matched by source address. Instead each node
# runs under its own group id; the first packet of every connection (ctstate NEW) is tagged
# with the initiating node's connmark (owner match on that gid); a partition then drops, in
# OUTPUT (all loopback traffic passes it), every packet of a connection tagged X whose other end
# is the address of a node on the other side (both directions: `-d` for requests, `-s` for
# replies), and vice versa. Connections from the harness itself (clients, admin CLI) carry no
# mark and are never cut: clients can still reach an isolated node, as they could in a real
# partition between aggregator hosts.


class Firewall:
    def __init__(self, backend, gids, ips):
        self.backend = backend  # "iptables" or "nft"
        self.gids = gids  # slot -> gid
        self.ips = ips  # slot -> ip
        tag = str(os.getpid())
        self.chain = "LGJ-%s" % tag
        self.mark_chain = "LGJM-%s" % tag
        self.table = "lograft_jepsen_%s" % tag
        self.installed = False
        self.active = None

    @staticmethod
    def mark(slot):
        return 0x4A00 + slot

    def _run(self, args, check=True):
        r = subprocess.run(args, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(args), (r.stderr or r.stdout).strip()))
        return r

    def _nft(self, *words, check=True):
        return self._run(["nft"] + list(words), check=check)

    def install(self):
        if self.backend == "iptables":
            ipt = ["iptables", "-w"]
            self._run(ipt + ["-t", "mangle", "-N", self.mark_chain])
            self.installed = True
            self._run(ipt + ["-t", "mangle", "-I", "OUTPUT", "-j", self.mark_chain])
            for slot, gid in self.gids.items():
                self._run(ipt + ["-t", "mangle", "-A", self.mark_chain, "-m", "conntrack",
                                 "--ctstate", "NEW", "-m", "owner", "--gid-owner", str(gid),
                                 "-j", "CONNMARK", "--set-mark", hex(self.mark(slot))])
            self._run(ipt + ["-N", self.chain])
            self._run(ipt + ["-I", "OUTPUT", "-j", self.chain])
        else:
            self._nft("add", "table", "inet", self.table)
            self.installed = True
            self._nft("add", "chain", "inet", self.table, "tagconn",
                      "{ type filter hook output priority mangle; }")
            for slot, gid in self.gids.items():
                self._nft("add", "rule", "inet", self.table, "tagconn", "ct", "state", "new",
                          "meta", "skgid", str(gid), "ct", "mark", "set", hex(self.mark(slot)))
            self._nft("add", "chain", "inet", self.table, "cut",
                      "{ type filter hook output priority filter; }")

    def isolate(self, groups):
        """Cut every connection between nodes of different groups (lists of slots)."""
        self.heal()
        where = {s: gi for gi, g in enumerate(groups) for s in g}
        for a, b in itertools.permutations(sorted(where), 2):
            if where[a] == where[b]:
                continue
            m, ip = hex(self.mark(a)), self.ips[b]
            for direction in ("-d", "-s"):
                if self.backend == "iptables":
                    self._run(["iptables", "-w", "-A", self.chain, "-m", "connmark", "--mark", m,
                               direction, ip, "-j", "DROP"])
                else:
                    self._nft("add", "rule", "inet", self.table, "cut", "ct", "mark", m, "ip",
                              "daddr" if direction == "-d" else "saddr", ip, "drop")
        self.active = groups

    def heal(self):
        if not self.installed:
            return
        if self.backend == "iptables":
            self._run(["iptables", "-w", "-F", self.chain], check=False)
        else:
            self._nft("flush", "chain", "inet", self.table, "cut", check=False)
        self.active = None

    def uninstall(self):
        if not self.installed:
            return
        if self.backend == "iptables":
            ipt = ["iptables", "-w"]
            for _ in range(3):
                if self._run(ipt + ["-D", "OUTPUT", "-j", self.chain], check=False).returncode:
                    break
            self._run(ipt + ["-F", self.chain], check=False)
            self._run(ipt + ["-X", self.chain], check=False)
            for _ in range(3):
                if self._run(ipt + ["-t", "mangle", "-D", "OUTPUT", "-j", self.mark_chain],
                             check=False).returncode:
                    break
            self._run(ipt + ["-t", "mangle", "-F", self.mark_chain], check=False)
            self._run(ipt + ["-t", "mangle", "-X", self.mark_chain], check=False)
        else:
            self._nft("delete", "table", "inet", self.table, check=False)
        self.installed = False
        self.active = None

    def self_test(self):
        """Prove the rules cut node-to-node traffic (and only that) before relying on them."""
        slots = sorted(self.gids)
        x, y = slots[0], slots[1]
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((self.ips[x], 0))
        srv.listen(16)
        port = srv.getsockname()[1]
        stop = threading.Event()

        def serve():
            srv.settimeout(0.2)
            while not stop.is_set():
                try:
                    c, _ = srv.accept()
                except OSError:
                    continue
                try:
                    c.settimeout(2)
                    c.sendall(b"pong" + c.recv(8))
                except OSError:
                    pass
                c.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        probe = ("import socket\ns=socket.socket();s.settimeout(1.5)\n"
                 "try:\n s.connect((%r,%d));s.sendall(b'x');print(s.recv(8).decode())\n"
                 "except Exception as e: print('cut')\n") % (self.ips[x], port)

        def reach(gid):
            r = subprocess.run([sys.executable, "-c", probe], group=gid, capture_output=True,
                               text=True, timeout=20)
            return r.stdout.strip() == "pongx"

        try:
            before = reach(self.gids[y])
            self.isolate([[x], [s for s in slots if s != x]])
            during_peer = reach(self.gids[y])
            during_harness = reach(0)
            self.heal()
            after = reach(self.gids[y])
        finally:
            self.heal()
            stop.set()
            t.join()
            srv.close()
        ok = before and not during_peer and during_harness and after
        return ok, dict(before=before, during_peer=during_peer, during_harness=during_harness,
                        after=after)


def setup_firewall(preferred, gids, ips):
    """Returns (Firewall or None, message)."""
    backends = ["iptables", "nft"] if preferred == "auto" else [preferred]
    errors = []
    if os.geteuid() != 0:
        return None, "partition nemesis needs root (iptables/nft); not running as root"
    for b in backends:
        if shutil.which(b) is None and b == "iptables":
            log("iptables not found; trying apt-get install -y iptables")
            subprocess.run(["apt-get", "install", "-y", "-q", "iptables"], capture_output=True)
        if shutil.which(b) is None:
            errors.append("%s: not installed" % b)
            continue
        fw = Firewall(b, gids, ips)
        try:
            fw.install()
            ok, detail = fw.self_test()
            if ok:
                return fw, "partitions via %s (self-test passed: %s)" % (b, detail)
            errors.append("%s: rules installed but self-test failed: %s" % (b, detail))
        except Exception as e:  # noqa: BLE001
            errors.append("%s: %s" % (b, e))
        fw.uninstall()
    return None, "; ".join(errors)


# ---------------------------------------------------------------------------------------------
# the cluster


# The `<buffer>` of the nodes' `<match>`, whatever the bucket.
UPLOAD_BUFFER = """  <buffer tag>
    flush_interval %(flush)s
    chunk_limit_size 2m
    retry_wait 0.2s
    retry_max_interval 1s
  </buffer>
"""

# The nodes' `<match>` with `--bucket dir` (the default): a local directory as the bucket.
FILE_MATCH = """<match test.**>
  @type file
  path %(bucket)s
%(buffer)s</match>
"""

# Every host's Forward input (nodes and forwarders).
FORWARD_SOURCE = """<source>
  @type forward
  bind %(ip)s
  port %(fwd)d
%(limits)s</source>
"""


class Disk:
    """A host's disk as a lazyfs mount (jepsen/lazyfs): what the node wrote but did not fsync
    (data not fsynced, names in directories not fsynced) is lost when the power is cut. The
    power cut is stopping lazyfs; mounting it again boots the disk on what survived."""

    def __init__(self, host_dir, lazyfs_bin, log_path):
        self.mnt = os.path.join(host_dir, "disk")
        self.backing = os.path.join(host_dir, "lazyfs")
        self.bin = lazyfs_bin
        self.log_path = log_path
        self.pidfile = os.path.join(host_dir, "lazyfs.pid")
        self.proc = None

    @property
    def mounted(self):
        return self.proc is not None and self.proc.poll() is None

    def mount(self):
        os.makedirs(self.mnt, exist_ok=True)
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as lf:
            self.proc = subprocess.Popen([self.bin, self.backing, self.mnt], stdout=subprocess.PIPE,
                                         stderr=lf, stdin=subprocess.DEVNULL, start_new_session=True)
        line = self.proc.stdout.readline().decode(errors="replace")
        self.proc.stdout.close()
        if not line.startswith("lazyfs: mounted"):
            raise RuntimeError("lazyfs did not mount %s (%r); see %s" % (self.mnt, line, self.log_path))
        with open(self.pidfile, "w") as f:
            f.write("%d\n" % self.proc.pid)

    def cut(self):
        """Power cut: stop lazyfs, which drops everything unsynced (the host must be dead)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        self.proc = None


class Slot:
    """One aggregator host: a fixed loopback address, ports and gid; its node id changes when it
    comes back from a disk loss. With lazyfs its Raft and buffer dirs live on its own `Disk`."""

    def __init__(self, cluster, slot):
        self.cluster = cluster
        self.slot = slot
        self.ip = "%s.%d" % (cluster.args.ip_prefix, cluster.args.ip_base + slot)
        self.fwd_port = cluster.args.forward_port
        self.raft_port = cluster.args.raft_port
        self.gid = cluster.args.gid_base + slot
        self.dir = os.path.join(cluster.workdir, self.dir_name)
        self.node_id = slot
        self.config_text = None
        self.proc = None
        self.paused = False
        self.down = False  # deliberately down (killed / wiped), not a crash
        self.logfile = None
        self.disk = None
        if cluster.args.use_lazyfs:
            self.disk = Disk(self.dir, cluster.args.lazyfs_bin,
                             os.path.join(cluster.workdir, "logs", "%s-lazyfs.log" % self.dir_name))

    dir_name = property(lambda self: "slot%d" % self.slot)
    is_forwarder = False

    @property
    def ready_port(self):
        """The port that is open once the process is up (after a restart)."""
        return self.raft_port

    @property
    def raft_addr(self):
        return "%s:%d" % (self.ip, self.raft_port)

    @property
    def root(self):
        return self.disk.mnt if self.disk else self.dir

    @property
    def raft_dir(self):
        return os.path.join(self.root, "raft")

    @property
    def data_dir(self):
        return os.path.join(self.root, "data")

    @property
    def log_path(self):
        return os.path.join(self.cluster.workdir, "logs", "slot%d-node%d.log" % (self.slot, self.node_id))

    def config(self, membership):
        a = self.cluster.args
        return """# lograft-jepsen slot %(slot)d, node %(id)d
%(source)s%(match)s<cluster>
  node_id %(id)d
  address %(ip)s:%(raft)d
  data_dir %(raft_dir)s
  heartbeat_interval %(hb)s
  election_timeout %(et)s
%(extra)s%(membership)s
%(transport)s</cluster>
""" % dict(transport=self.cluster.transport_text(self.node_id), slot=self.slot, id=self.node_id, ip=self.ip, fwd=self.fwd_port, raft=self.raft_port,
           source=self.cluster.forward_source(self), match=self.cluster.match_text(),
           raft_dir=self.raft_dir,
           hb=a.heartbeat_interval, et=a.election_timeout,
           extra="".join("  %s\n" % l for l in a.cluster_extra), membership=membership)

    def write_config(self, membership):
        os.makedirs(self.dir, exist_ok=True)
        self.config_text = self.config(membership)
        path = os.path.join(self.dir, "node%d.conf" % self.node_id)
        with open(path, "w") as f:
            f.write(self.config_text)
        return path

    @property
    def config_path(self):
        return os.path.join(self.dir, "node%d.conf" % self.node_id)

    def start(self):
        if self.disk and not self.disk.mounted:
            self.disk.mount()
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        lf = open(self.log_path, "ab")
        lf.write(("\n==== harness: start %s at %s ====\n" % (self.node_id, time.strftime("%H:%M:%S"))).encode())
        lf.flush()
        env = dict(os.environ, RUST_LOG=self.cluster.args.rust_log)
        self.proc = subprocess.Popen(
            [self.cluster.bin, "run", "-c", self.config_path, "--data-dir", self.data_dir],
            stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            group=self.gid if os.geteuid() == 0 else None, start_new_session=True)
        lf.close()
        with open(os.path.join(self.dir, "pid"), "w") as f:
            f.write("%d\n" % self.proc.pid)
        self.paused = False
        self.down = False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            os.kill(self.proc.pid, sig)

    def kill9(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.paused = False
        self.down = True

    def power_cut(self):
        """kill -9 and drop everything the host did not fsync (its lazyfs disk)."""
        self.kill9()
        self.disk.cut()

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.paused = False

    def wait_port(self, port, timeout):
        def ok():
            if not self.running():
                return "exited"
            return port_open(self.ip, port) and "open"
        r = wait_for(ok, timeout, 0.1)
        return r == "open"


class Forwarder(Slot):
    """A lograft forwarder host in front of the cluster: Forward in, file buffer, out_forward to
    every aggregator with acks. Clients write to forwarders when `--forwarders N` > 0."""

    dir_name = property(lambda self: "fwd%d" % (self.slot - FWD_SLOT_BASE))
    is_forwarder = True

    def __init__(self, cluster, slot):
        super().__init__(cluster, slot)
        self.node_id = "f%d" % (slot - FWD_SLOT_BASE)

    @property
    def ready_port(self):
        return self.fwd_port

    @property
    def log_path(self):
        return os.path.join(self.cluster.workdir, "logs", "%s.log" % self.dir_name)

    @property
    def config_path(self):
        return os.path.join(self.dir, "forwarder.conf")

    def config(self, membership=None):
        a = self.cluster.args
        servers = "".join(
            "  <server>\n    host %s\n    port %d\n  </server>\n" % (s.ip, s.fwd_port)
            for s in self.cluster.slots.values())
        return """# lograft-jepsen forwarder %(name)s
%(source)s<match test.**>
  @type forward
  require_ack_response true
  ack_response_timeout 8s
  send_timeout 5s
  connect_timeout 1s
  recover_wait 1s
%(servers)s  <buffer>
    flush_interval %(flush)s
    chunk_limit_size 1m
    retry_wait 0.2s
    retry_max_interval 1s
    retry_forever true
  </buffer>
</match>
""" % dict(name=self.node_id, source=self.cluster.forward_source(self),
           servers=servers,
           flush=a.forwarder_flush_interval)

    def write_config(self, membership=None):
        os.makedirs(self.dir, exist_ok=True)
        self.config_text = self.config()
        with open(self.config_path, "w") as f:
            f.write(self.config_text)
        return self.config_path

    def buffered(self):
        """(chunk files still in the buffer, files in quarantine/)."""
        chunks, quarantined = 0, []
        for root, _, files in os.walk(self.data_dir):
            for name in files:
                if "quarantine" in root.split(os.sep):
                    quarantined.append(os.path.join(root, name))
                elif name.startswith("buffer.") and name.endswith(".log"):
                    chunks += 1
        return chunks, quarantined


FWD_SLOT_BASE = 20  # forwarder i is slot 20+i: address PREFIX.(ip-base+20+i), gid gid-base+20+i


class Cluster:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.bin = args.bin
        # With `--bucket dir` the cluster uploads into this directory; with `--bucket s3` it is
        # where the checker's snapshot of the S3 bucket goes (read through the S3 API).
        self.bucket = os.path.join(workdir, "bucket")
        os.makedirs(self.bucket, exist_ok=True)
        self.s3 = None  # s3bucket.S3Bucket, with --bucket s3 (started by `start`)
        self.slots = {s: Slot(self, s) for s in range(1, args.nodes + 1)}
        self.forwarders = {FWD_SLOT_BASE + i: Forwarder(self, FWD_SLOT_BASE + i)
                           for i in range(1, args.forwarders + 1)}
        self.next_id = args.nodes + 1
        self.anomalies = []
        self.lock = threading.RLock()
        # Mutual TLS on the cluster port (the default, as in production): one CA for the run,
        # a node certificate per node id (made when an id first appears: a replaced node joins
        # under a new id), and the operator certificate the harness's admin calls use.
        self.certs = os.path.join(workdir, "certs") if args.tls else None
        if self.certs:
            self._make_certs(["--nodes", ",".join(str(i) for i in range(1, args.nodes + 1))])
            os.environ.update(LOGRAFT_CLUSTER_CA=os.path.join(self.certs, "ca.pem"),
                              LOGRAFT_CLUSTER_CERT=os.path.join(self.certs, "operator.pem"),
                              LOGRAFT_CLUSTER_KEY=os.path.join(self.certs, "operator.key"))

    def _make_certs(self, args):
        subprocess.run([self.bin, "cluster", "certs", self.certs] + args, check=True,
                       capture_output=True, text=True)

    def transport_text(self, node_id):
        """The <transport tls> section for node `node_id` (its certificate made if new)."""
        if not self.certs:
            return ""
        key = os.path.join(self.certs, "node-%d.key" % node_id)
        if not os.path.exists(key):
            self._make_certs(["--nodes", str(node_id), "--no-operator"])
        return ("  <transport tls>\n    ca_path %s\n    cert_path %s\n    private_key_path %s\n"
                "  </transport>\n" % (os.path.join(self.certs, "ca.pem"),
                                     os.path.join(self.certs, "node-%d.pem" % node_id), key))

    def match_text(self):
        """The nodes' `<match test.**>`: the bucket directory, or S3 through the fault proxy."""
        buffer = UPLOAD_BUFFER % dict(flush=self.args.flush_interval)
        if self.s3:
            return s3bucket.match_text(self.s3.endpoint, buffer)
        return FILE_MATCH % dict(bucket=self.bucket, buffer=buffer)

    def forward_source(self, host):
        """The in_forward `<source>` of a node or forwarder. `--poison-chunk-size-limit` sets
        `chunk_size_limit` on the entry points only (not on nodes behind forwarders: the
        forwarders' frames, up to out_forward's 4 MiB `max_frame_size`, must pass)."""
        entry = host.is_forwarder == bool(self.args.forwarders)
        limit = self.args.poison_chunk_size_limit if entry else None
        return FORWARD_SOURCE % dict(ip=host.ip, fwd=host.fwd_port,
                                     limits="  chunk_size_limit %d\n" % limit if limit else "")

    def host(self, slot):
        """A node's or a forwarder's slot."""
        return self.slots.get(slot) or self.forwarders[slot]

    def hosts(self):
        return list(self.slots.values()) + list(self.forwarders.values())

    def entry_points(self):
        """Where clients write: the forwarders if any, else the aggregators."""
        return dict(self.forwarders) if self.forwarders else dict(self.slots)

    def forwarders_drained(self):
        """True once no forwarder holds a chunk in its buffer."""
        for f in self.forwarders.values():
            chunks, _ = f.buffered()
            if chunks:
                return False
        return True

    def anomaly(self, kind, **detail):
        detail["kind"] = kind
        detail["t"] = round(time.monotonic() - _T0, 2)
        self.anomalies.append(detail)
        log("ANOMALY %s: %s" % (kind, json.dumps({k: v for k, v in detail.items() if k != "log_tail"})))

    def members_text(self, slots=None):
        return "\n".join(
            "  <member>\n    id %d\n    address %s\n  </member>" % (s.node_id, s.raft_addr)
            for s in (slots or self.slots.values()))

    def cli(self, *args, timeout=10):
        try:
            r = subprocess.run([self.bin, "cluster"] + list(args), capture_output=True, text=True,
                               timeout=timeout)
            return r.returncode, r.stdout, r.stderr
        except subprocess.TimeoutExpired:
            return None, "", "timed out after %ss" % timeout

    def status(self, slot, timeout=3):
        s = self.slots[slot]
        if not s.running() or s.paused:
            return None
        rc, out, _ = self.cli("status", "--json", "--node", s.raft_addr, timeout=timeout)
        if rc != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def statuses(self):
        return {slot: self.status(slot) for slot in self.slots}

    def slot_of(self, node_id):
        for s in self.slots.values():
            if s.node_id == node_id:
                return s.slot
        return None

    def leader(self):
        """Slot of the node that says it leads with the highest term (None: no such node)."""
        best = None
        for slot, st in self.statuses().items():
            if st and st.get("state") == "Leader" and st.get("node_id") == self.slots[slot].node_id:
                if best is None or st["term"] > best[1]:
                    best = (slot, st["term"])
        return best and best[0]

    def agreed_leader(self):
        """Slot of the leader every running, unpaused node names, once it says it leads."""
        views = {}
        for slot, st in self.statuses().items():
            s = self.slots[slot]
            if s.running() and not s.paused:
                views[slot] = st and st.get("leader_id")
        ids = set(views.values())
        if len(ids) != 1 or None in ids:
            return None
        slot = self.slot_of(ids.pop())
        if slot is None:
            return None
        st = self.status(slot)
        return slot if st and st.get("state") == "Leader" else None

    def check_ports_free(self):
        """Every host's fixed ports must be free: another harness run (e.g. the test suite's)
        on the same addresses would answer in our nodes' place."""
        for h in self.hosts():
            for port in {h.fwd_port, h.raft_port}:
                with socket.socket() as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the nodes
                    try:
                        probe.bind((h.ip, port))
                    except OSError as e:
                        raise RuntimeError("%s:%d is in use (%s): another harness run? Choose other "
                                           "addresses with --ip-base (and --gid-base)" % (h.ip, port, e))

    def start(self):
        self.check_ports_free()
        if self.args.bucket == "s3":
            self.s3 = s3bucket.S3Bucket(self.args.s3_python, os.path.join(self.workdir, "logs", "moto.log"),
                                        seed=self.args.seed_used,
                                        slow_delay=(self.args.s3_slow_min, self.args.s3_slow_max))
            self.s3.start()
            with open(os.path.join(self.workdir, "moto.pid"), "w") as f:
                f.write("%d\n" % self.s3.proc.pid)
            log("S3 bucket: moto at %s, cluster uploads through the fault proxy at %s" % (
                self.s3.moto_endpoint, self.s3.endpoint))
        for s in self.slots.values():
            s.write_config(self.members_text())
            s.start()
        for s in self.slots.values():
            if not s.wait_port(s.raft_port, 60):
                raise RuntimeError("node %d did not open its Raft port; see %s" % (s.node_id, s.log_path))
        leader = wait_for(self.agreed_leader, 90, 0.3)
        if not leader:
            raise RuntimeError("no leader within 90 s; see %s/logs" % self.workdir)
        for s in self.slots.values():
            if not s.wait_port(s.fwd_port, 60):
                raise RuntimeError("node %d did not open its Forward port" % s.node_id)
        log("cluster up: leader slot %d (node %d); nodes %s" % (
            leader, self.slots[leader].node_id,
            ", ".join("%d@%s" % (s.node_id, s.ip) for s in self.slots.values())))
        for f in self.forwarders.values():
            f.write_config()
            f.start()
        for f in self.forwarders.values():
            if not f.wait_port(f.fwd_port, 60):
                raise RuntimeError("forwarder %s did not open its Forward port; see %s" % (f.node_id, f.log_path))
        if self.forwarders:
            log("forwarders up: %s" % ", ".join("%s@%s" % (f.node_id, f.ip) for f in self.forwarders.values()))

    def check_crashes(self):
        """Restart (and report) nodes that exited without being killed by the harness."""
        for s in self.hosts():
            if s.proc is not None and not s.down and s.proc.poll() is not None:
                self.anomaly("node-exited", slot=s.slot, node_id=s.node_id, code=s.proc.returncode,
                             log=s.log_path, log_tail=tail(s.log_path, 30))
                s.start()

    def stop_all(self):
        for s in self.hosts():
            if s.running():
                s.resume()
                s.signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for s in self.hosts():
            if s.proc is not None:
                try:
                    s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    s.proc.kill()
                    s.proc.wait()
        for s in self.hosts():
            if s.disk:
                s.disk.cut()  # unmount; the kept work dir has each disk under slotN/lazyfs/live
        if self.s3:
            self.s3.stop()


def tail(path, n):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 200_000))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# workload


def error_kind(e):
    if isinstance(e, NoAck):
        return "closed-without-ack" if "closed" in str(e) else "bad-reply"
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    return type(e).__name__


class Workload:
    """K client threads; each sends PackedForward chunks of M fresh sequence numbers with a
    unique chunk id, waits for the ack, and on failure resends the SAME frame (same chunk id)
    to another node until acked or `retry_timeout` passes."""

    def __init__(self, cluster, args, run_id, seed):
        self.cluster = cluster
        self.args = args
        self.run_id = run_id
        self.seed = seed
        self.next_seq = 0
        self.seq_lock = threading.Lock()
        self.stop = threading.Event()
        self.results = []  # dicts, one per chunk
        self.res_lock = threading.Lock()
        self.threads = []
        self.attempt_errors = collections.Counter()
        self.acked_events = 0

    def start(self):
        for c in range(self.args.clients):
            t = threading.Thread(target=self.client, args=(c,), name="client-%d" % c, daemon=True)
            t.start()
            self.threads.append(t)

    def alloc(self):
        with self.seq_lock:
            first = self.next_seq
            self.next_seq += self.args.events_per_chunk
        return first

    def client(self, c):
        rng = random.Random("%d-%d" % (self.seed, c))
        targets = self.cluster.entry_points()
        slots = sorted(targets)
        sock = None
        sock_slot = None
        n = 0
        while not self.stop.is_set():
            n += 1
            chunk_id = "%s-c%d-%d" % (self.run_id, c, n)
            first = self.alloc()
            count = self.args.events_per_chunk
            frame = packed_forward(TAG, entries(first, count, chunk_id, self.args.pad), count, chunk_id)
            t_invoke = time.monotonic() - _T0
            deadline = time.monotonic() + self.args.retry_timeout
            attempts = []
            written = False
            acked_by = None
            if sock is None or rng.random() < self.args.switch:
                prefer = rng.choice(slots)  # spread the clients over the nodes
            else:
                prefer = sock_slot
            order = [prefer] + [s for s in rng.sample(slots, len(slots)) if s != prefer]
            k = 0
            while time.monotonic() < deadline:
                slot = order[k % len(order)]
                k += 1
                node = targets[slot]
                phase = "connect"
                try:
                    if sock is None or sock_slot != slot:
                        if sock is not None:
                            sock.close()
                            sock = None
                        sock = socket.create_connection((node.ip, node.fwd_port),
                                                        timeout=self.args.connect_timeout)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        sock_slot = slot
                    sock.settimeout(self.args.ack_timeout)
                    phase = "ack"
                    written = True  # from here on the node may have received (part of) it
                    sock.sendall(frame)
                    ack = self.read_ack(sock)
                    if ack != chunk_id.encode():
                        raise NoAck("bad ack %r" % (ack,))
                    acked_by = slot
                    break
                except (OSError, NoAck, ValueError) as e:
                    kind = error_kind(e)
                    if phase == "connect":
                        kind = "connect-" + kind
                    attempts.append((round(time.monotonic() - _T0, 2), slot, kind))
                    with self.res_lock:
                        self.attempt_errors[kind] += 1
                    if sock is not None:
                        try:
                            sock.close()
                        except OSError:
                            pass
                    sock = None
                    sock_slot = None
                    time.sleep(rng.uniform(0.05, 0.3))
            outcome = "ok" if acked_by else ("unknown" if written else "fail")
            rec = dict(chunk=chunk_id, first=first, count=count, outcome=outcome, client=c,
                       node=acked_by and targets[acked_by].node_id, slot=acked_by,
                       t_invoke=round(t_invoke, 3), t_complete=round(time.monotonic() - _T0, 3),
                       attempts=attempts)
            with self.res_lock:
                self.results.append(rec)
                if acked_by:
                    self.acked_events += count
        if sock is not None:
            sock.close()

    @staticmethod
    def read_ack(sock):
        """Read the `{"ack": id}` reply; returns the id (bytes)."""
        buf = bytearray()
        while True:
            data = sock.recv(4096)
            if not data:
                raise NoAck("connection closed without an ack")
            buf += data
            try:
                v, _ = mp_decode(buf)
            except NeedMore:
                continue
            if isinstance(v, dict):
                return v.get(b"ack")
            raise NoAck("unexpected reply %r" % (v,))

    def finish(self, timeout):
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]

    def stats(self):
        with self.res_lock:
            c = collections.Counter(r["outcome"] for r in self.results)
            return c, self.acked_events


# ---------------------------------------------------------------------------------------------
# nemeses


class Nemesis:
    def __init__(self, cluster, firewall, args, rng, poisoner=None):
        self.c = cluster
        self.fw = firewall
        self.poisoner = poisoner  # poison.Poisoner, with the poison nemesis
        self.args = args
        self.rng = rng
        self.ops = []
        self.current = None  # (kind, detail) of the fault in force
        self.broken = False  # a recovery failed: stop injecting
        self.host_faults = {}  # kind -> faults so far (alternates forwarder / node targets)
        self.s3_modes = []  # s3 fault modes still to draw in this round

    def record(self, kind, phase, **detail):
        detail.update(kind=kind, phase=phase, t=round(time.monotonic() - _T0, 2))
        self.ops.append(detail)
        log("nemesis %s %s %s" % (kind, phase, json.dumps({k: v for k, v in detail.items() if k not in ("kind", "phase", "t")})))

    def pick_target(self, leader):
        if leader and self.rng.random() < self.args.leader_bias:
            return leader, "leader"
        return self.rng.choice(sorted(self.c.slots)), "random"

    def pick_host(self, kind, leader):
        """For kill, pause and power-loss: with forwarders, every other fault of a kind (the
        first one included) hits a random forwarder; the others, and all without forwarders,
        a node as `pick_target`."""
        n = self.host_faults[kind] = self.host_faults.get(kind, 0) + 1
        if self.c.forwarders and n % 2 == 1:
            return self.rng.choice(sorted(self.c.forwarders)), "forwarder"
        return self.pick_target(leader)

    # -- faults -------------------------------------------------------------------------------

    def start_fault(self, kind):
        c = self.c
        leader = c.leader()
        if kind in ("kill", "pause", "power-loss"):
            slot, why = self.pick_host(kind, leader)
            s = c.host(slot)
            {"kill": s.kill9, "pause": s.pause, "power-loss": s.power_cut}[kind]()
            self.current = (kind, dict(slot=slot))
            self.record(kind, "start", slot=slot, node_id=s.node_id, target=why,
                        leader_slot=leader)
        elif kind == "partition":
            slot, why = self.pick_target(leader)
            others = [x for x in sorted(c.slots) if x != slot]
            self.fw.isolate([[slot], others])
            self.current = (kind, dict(slot=slot))
            self.record(kind, "start", slot=slot, node_id=c.slots[slot].node_id, target=why,
                        leader_slot=leader, groups=[[slot], others])
        elif kind == "poison":
            detail = self.poisoner.start()
            self.current = (kind, dict(slot=None))
            points = c.entry_points()
            self.record(kind, "start", node_id="%d %s" % (
                len(points), "forwarders" if c.forwarders else "nodes"), leader_slot=leader, **detail)
        elif kind == "s3":
            if not self.s3_modes:
                # Every mode once per round, in a random order but `hang` last: the requests it
                # swallows tie up the uploader until the S3 client's request timeout (30 s), so
                # windows after it would see no request at all.
                modes = self.rng.sample(self.args.s3_modes, len(self.args.s3_modes))
                self.s3_modes = sorted(modes, key=lambda m: m != "hang")  # popped from the end
            mode = self.s3_modes.pop()
            proxy = c.s3.proxy
            proxy.set_fault(mode, self.args.s3_fault_rate)
            self.current = (kind, dict(slot=None, mode=mode, before=proxy.counts()))
            self.record(kind, "start", node_id=mode, mode=mode,
                        rate=self.args.s3_fault_rate, leader_slot=leader)
        elif kind == "majority-loss":
            self.start_majority_loss(leader)
        elif kind in DISK_LOSSES:
            if not leader:
                leader = wait_for(c.leader, 15, 0.5)
            if not leader:
                self.record(kind, "skipped", reason="no leader")
                return False
            if kind == "leader-disk-loss":
                slot = leader
            else:
                slot = self.rng.choice([x for x in sorted(c.slots) if x != leader])
            s = c.slots[slot]
            s.kill9()
            shutil.rmtree(s.raft_dir, ignore_errors=True)
            shutil.rmtree(s.data_dir, ignore_errors=True)
            self.current = (kind, dict(slot=slot, old_id=s.node_id, leader_slot=leader))
            self.record(kind, "start", slot=slot, node_id=s.node_id, leader_slot=leader,
                        target="leader" if slot == leader else "follower",
                        wiped=[s.raft_dir, s.data_dir])
        return True

    def start_majority_loss(self, leader):
        """Take down a majority (kill -9 or SIGSTOP, one way for all, the leader first with
        probability `--leader-bias`); the `start` record is written once all of them are down:
        from then on no write may be acknowledged until `restore`."""
        c = self.c
        need = len(c.slots) // 2 + 1
        how = self.rng.choice(("kill", "pause"))
        slots = []
        if leader and self.rng.random() < self.args.leader_bias:
            slots.append(leader)
        others = [x for x in sorted(c.slots) if x not in slots]
        slots += self.rng.sample(others, need - len(slots))
        for slot in slots:
            s = c.slots[slot]
            s.kill9() if how == "kill" else s.pause()
        self.current = ("majority-loss", dict(slot=None, slots=slots, how=how))
        self.record("majority-loss", "start", node_id="+".join("n%d" % c.slots[x].node_id for x in slots),
                    slots=slots, how=how, leader_slot=leader,
                    target="leader" if leader in slots else "followers")

    def heal(self):
        if not self.current:
            return True
        kind, d = self.current
        c = self.c
        s = c.host(d["slot"]) if d["slot"] is not None else None
        ok = True
        if kind == "poison":
            self.record(kind, "heal", **self.poisoner.stop())
        elif kind in ("kill", "power-loss"):
            s.start()  # power-loss: lazyfs boots the disk on what was fsynced, then the node
            ok = s.wait_port(s.ready_port, 60)
            self.record(kind, "heal", slot=s.slot, node_id=s.node_id, restarted=ok)
            if not ok:
                c.anomaly("restart-failed", slot=s.slot, node_id=s.node_id, log=s.log_path,
                          log_tail=tail(s.log_path, 30))
        elif kind == "pause":
            s.resume()
            self.record(kind, "heal", slot=s.slot, node_id=s.node_id)
        elif kind == "partition":
            self.fw.heal()
            self.record(kind, "heal", slot=s.slot, node_id=s.node_id)
        elif kind == "s3":
            c.s3.proxy.clear()
            after = c.s3.proxy.counts()
            hit = after.get(d["mode"], 0) - d["before"].get(d["mode"], 0)
            passed = after.get("passed", 0) - d["before"].get("passed", 0)
            self.record(kind, "heal", node_id=d["mode"], mode=d["mode"],
                        requests_faulted=hit, requests_passed=passed)
        elif kind == "majority-loss":
            # `restore`: the end of the window in which no ack may be given.
            self.record(kind, "restore", slots=d["slots"], how=d["how"])
            for slot in d["slots"]:
                x = c.slots[slot]
                x.start() if d["how"] == "kill" else x.resume()
            up = {slot: c.slots[slot].wait_port(c.slots[slot].ready_port, 60) for slot in d["slots"]}
            self.record(kind, "heal", slots=d["slots"], how=d["how"], restarted=up)
            for slot, u in up.items():
                if not u:
                    ok = False
                    x = c.slots[slot]
                    c.anomaly("restart-failed", slot=slot, node_id=x.node_id, log=x.log_path,
                              log_tail=tail(x.log_path, 30))
        elif kind in ("disk-loss", "leader-disk-loss"):
            ok = self.rejoin(s, d["old_id"], kind)
        elif kind == "double-fault":
            ok = self.rejoin_under_kill(s, d["old_id"])
        self.current = None
        if not ok:
            self.broken = True
        return ok

    def rejoin_under_kill(self, s, old_id):
        """double-fault: the disk-loss replacement of `s` (in a thread) and, while it runs,
        `kill -9` of another node (the leader with probability `--leader-bias`) at a random
        step of it (just after the old id was refused, or once the new node joined, before
        `cluster replace`); that node is restarted after `--fault-min/max` s. With 3 nodes this
        also loses the majority for a while (the wiped node's old id is still a voter)."""
        c = self.c
        at = self.rng.choice(("checked", "joined")) if self.args.check_old_id_refused else "joined"
        reached, killed = threading.Event(), threading.Event()
        outcome = {}

        def on_step(name):
            """In the replacement's thread: at step `at`, hand over to the kill and go on only
            once the victim is down (so the kill always falls inside the replacement)."""
            if name == at:
                reached.set()
                killed.wait(60)

        def replace():
            try:
                outcome["ok"] = self.rejoin(s, old_id, "double-fault", on_step=on_step)
            finally:
                reached.set()

        t = threading.Thread(target=replace, name="double-fault-replace", daemon=True)
        t.start()
        reached.wait(400)
        if t.is_alive():
            leader = c.leader()
            victim, why = self.pick_target(leader)
            if victim == s.slot:
                victim = self.rng.choice([x for x in sorted(c.slots) if x != s.slot])
                why = "random"
            v = c.slots[victim]
            v.kill9()
            self.record("kill", "start", slot=victim, node_id=v.node_id, target=why,
                        leader_slot=leader, amid="double-fault replacement of slot %d (after %s)"
                        % (s.slot, at))
            killed.set()
            time.sleep(self.rng.uniform(self.args.fault_min, self.args.fault_max))
            v.start()
            up = v.wait_port(v.ready_port, 60)
            self.record("kill", "heal", slot=victim, node_id=v.node_id, restarted=up)
            if not up:
                c.anomaly("restart-failed", slot=victim, node_id=v.node_id, log=v.log_path,
                          log_tail=tail(v.log_path, 30))
        killed.set()
        t.join(400)
        if t.is_alive():
            c.anomaly("replace-stuck", slot=s.slot, old_id=old_id)
            return False
        return outcome.get("ok", False)

    def rejoin(self, s, old_id, kind="disk-loss", on_step=None):
        """The documented disk-loss path: old id refused; new id + `join`; `cluster replace`.
        `on_step("checked")` once the old id's refusal was checked, `on_step("joined")` once
        the new node is in (for double-fault)."""
        c = self.c
        on_step = on_step or (lambda _n: None)
        leader = wait_for(c.leader, 60, 0.5)
        if not leader:
            c.anomaly("no-leader-for-replace", slot=s.slot, old_id=old_id)
            return False
        laddr = c.slots[leader].raft_addr
        # 1. Restarting under the old id on the empty data dir must be refused.
        if self.args.check_old_id_refused:
            path = os.path.join(s.dir, "old-id-check-node%d.conf" % old_id)
            with open(path, "w") as f:
                f.write(s.config(c.members_text()))
            try:
                r = subprocess.run([c.bin, "run", "-c", path, "--data-dir", s.data_dir],
                                   capture_output=True, text=True, timeout=60,
                                   group=s.gid if os.geteuid() == 0 else None,
                                   env=dict(os.environ, RUST_LOG="warn"))
                refused = r.returncode != 0 and "disk was lost" in r.stderr
                detail = [l[:160] for l in r.stderr.strip().splitlines()[-1:]]
            except subprocess.TimeoutExpired:
                refused = False
                detail = ["still running after 60 s (killed)"]
            self.record(kind, "old-id-refused" if refused else "old-id-NOT-refused",
                        slot=s.slot, old_id=old_id, stderr=detail)
            if not refused:
                c.anomaly("old-id-not-refused", slot=s.slot, old_id=old_id, detail=detail)
            shutil.rmtree(s.raft_dir, ignore_errors=True)
            shutil.rmtree(s.data_dir, ignore_errors=True)
            on_step("checked")
        # 2. New id, `join` a live member, same address and ports.
        new_id = c.next_id
        c.next_id += 1
        s.node_id = new_id
        s.write_config("  join %s" % laddr)
        s.start()
        joined = s.wait_port(s.fwd_port, 120)
        self.record(kind, "joined" if joined else "join-failed", slot=s.slot,
                    new_id=new_id, via=laddr)
        if not joined:
            c.anomaly("join-failed", slot=s.slot, new_id=new_id, log=s.log_path,
                      log_tail=tail(s.log_path, 30))
            return False
        on_step("joined")
        # 3. `cluster replace` promotes the new node and removes the old one, asked of the
        # leader every running node names (with double-fault the one we joined through may be
        # down, or just back and not yet sure who leads). Refused for want of a leader (an
        # election still running), it is asked again, as an operator would, for up to 60 s.
        deadline = time.monotonic() + 60
        while True:
            now = wait_for(c.agreed_leader, 60, 0.5)
            if now:
                laddr = c.slots[now].raft_addr
            rc, out, err = c.cli("replace", "--node", laddr, "--old", str(old_id), "--new",
                                 str(new_id), "--wait", "120", timeout=180)
            text = out + err
            if rc == 0 or time.monotonic() > deadline or not (
                    "knows no leader" in text or "not the leader" in text):
                break
            self.record(kind, "replace-retry", slot=s.slot, old_id=old_id, new_id=new_id, rc=rc,
                        output=text.strip().splitlines()[-1:])
            time.sleep(1)
        self.record(kind, "replaced" if rc == 0 else "replace-failed", slot=s.slot,
                    old_id=old_id, new_id=new_id, rc=rc,
                    output=(out + err).strip().splitlines()[-3:])
        if rc != 0:
            c.anomaly("replace-failed", slot=s.slot, old_id=old_id, new_id=new_id, rc=rc,
                      output=(out + err).strip())
            return False
        return True

    def observe(self):
        """Record each reachable node's view (state, term, leader) while the fault is in force."""
        if not self.current:
            return
        view = {}
        for slot, st in self.c.statuses().items():
            view[slot] = st and "node %d %s term %d leader %s" % (
                st.get("node_id"), st.get("state"), st.get("term"), st.get("leader_id"))
        self.record(self.current[0], "during", views=view)

    def release(self):
        """On abort: resume paused nodes, drop the partition, stop poisoning, but restart
        nothing."""
        self.current = None
        if self.poisoner:
            self.poisoner.stop(timeout=5)
        if self.c.s3:
            self.c.s3.proxy.clear()
        if self.fw:
            self.fw.heal()
        for s in self.c.hosts():
            if s.paused:
                s.resume()

    def heal_all(self):
        """Undo everything, whatever state the schedule was interrupted in."""
        ok = True
        try:
            ok = self.heal()
        finally:
            if self.c.s3:
                self.c.s3.proxy.clear()
            if self.fw:
                self.fw.heal()
            for s in self.c.hosts():
                if s.paused:
                    s.resume()
        return ok

    def run(self, kinds, duration, workload):
        end = time.monotonic() + duration
        a = self.args
        i = 0
        while time.monotonic() < end and not self.broken:
            quiet = self.rng.uniform(a.quiet_min, a.quiet_max)
            time.sleep(max(0, min(quiet, end - time.monotonic())))
            self.c.check_crashes()
            if end - time.monotonic() < a.fault_min:
                break  # no room for another fault in the schedule
            kind = kinds[i % len(kinds)] if a.round_robin else self.rng.choice(kinds)
            i += 1
            if not self.start_fault(kind):
                continue
            hold = min(self.rng.uniform(a.fault_min, a.fault_max), max(0, end - time.monotonic()))
            t_end = time.monotonic() + hold
            while time.monotonic() < t_end:
                time.sleep(min(0.5, max(0, t_end - time.monotonic())))
            self.observe()
            self.heal()
            c, ev = workload.stats()
            log("workload: %d chunks acked (%d events), %d unknown, %d failed" % (
                c["ok"], ev, c["unknown"], c["fail"]))
            self.c.check_crashes()


class LeaderWatch:
    """Who leads over the run, for the timeline: a thread asks every running node for its
    status every `interval` s (the question `Cluster.leader` asks: the node that says it leads
    with the highest term) and keeps one record per change, `{t, slot, node_id, term}`
    (`slot` None: no node said it leads). It only reads; `interval` 0 turns it off."""

    def __init__(self, cluster, interval):
        self.c = cluster
        self.interval = interval
        self.changes = []
        self.until = None
        self.stop_event = threading.Event()
        self.thread = None

    def start(self):
        if self.interval > 0:
            self.thread = threading.Thread(target=self.run, name="leader-watch", daemon=True)
            self.thread.start()

    def run(self):
        last = None
        while not self.stop_event.is_set():
            t = round(time.monotonic() - _T0, 2)
            best = None
            for slot, st in self.c.statuses().items():
                if (st and st.get("state") == "Leader" and st.get("node_id") == self.c.slots[slot].node_id
                        and (best is None or st["term"] > best[2])):
                    best = (slot, st["node_id"], st["term"])
            if self.stop_event.is_set():
                break  # the nodes may be stopping: this poll is not evidence
            key = best or (None, None, None)
            if key != last:
                last = key
                self.changes.append(dict(t=t, slot=key[0], node_id=key[1], term=key[2]))
            self.until = round(time.monotonic() - _T0, 2)
            self.stop_event.wait(self.interval)

    def stop(self):
        self.stop_event.set()
        if self.thread:
            self.thread.join(10)
            self.thread = None

    def record(self):
        return dict(interval=self.interval, until=self.until, changes=self.changes)


# ---------------------------------------------------------------------------------------------
# checker


def read_bucket(bucket, want=None):
    """Count every `seq` in the bucket's objects (its dead-letter area included: those are
    counted in `dead_lettered` too). With `want` (a set of seqs), also return the objects each
    of those seqs is in. Poison records (`{"poison": ...}`, jepsen/poison.py accounts for them)
    are passed over, and so are the pieces of a poison line cut by a control character in its
    tag."""
    counts = collections.Counter()
    where = collections.defaultdict(list)
    objects = 0
    other = []
    bad = []
    dead_lettered = 0
    for root, _, files in os.walk(bucket):
        for name in sorted(files):
            p = os.path.join(root, name)
            rel = os.path.relpath(p, bucket)
            if name.endswith(".log.gz"):
                opener = gzip.open
            elif name.endswith(".log"):
                opener = open
            else:
                other.append(rel)
                continue
            objects += 1
            try:
                with opener(p, "rb") as f:
                    raw = f.read()
            except (OSError, EOFError) as e:
                bad.append("%s: %s" % (rel, e))
                continue
            poisoned = bool(poison.poison_ids(raw))
            try:
                data = raw.decode()
            except UnicodeDecodeError as e:
                if not poisoned:  # a raw (msgpack) dead-letter batch of poison only: not ours
                    bad.append("%s: %s" % (rel, e))
                continue
            for line in data.split("\n"):
                if not line or '"poison":"' in line:
                    continue
                parts = line.split("\t", 2)
                if len(parts) != 3:
                    if not poisoned:
                        bad.append("%s: malformed line %r" % (rel, line[:100]))
                    continue
                try:
                    seq = json.loads(parts[2])["seq"]
                except (ValueError, KeyError, TypeError):
                    if not poisoned:
                        bad.append("%s: bad record %r" % (rel, parts[2][:100]))
                    continue
                counts[seq] += 1
                if poison.is_dead_letter(rel):
                    dead_lettered += 1
                if want is not None and seq in want:
                    where[seq].append(rel)
    return counts, where, objects, other, bad, dead_lettered


def wait_idle(cluster, timeout):
    """Wait until every forwarder's buffer is empty, all running nodes agree on a leader, the
    leader has nothing pending or unconfirmed, and every member is a caught-up voter. Returns
    (ok, last leader status)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        cluster.check_crashes()
        if not cluster.forwarders_drained():
            time.sleep(0.5)
            continue
        leader = cluster.agreed_leader()
        if leader:
            st = cluster.status(leader)
            last = st
            if st and st.get("pending_chunks") == 0 and st.get("unconfirmed_batches") == 0:
                members = st.get("members") or []
                ids = {s.node_id for s in cluster.slots.values()}
                voters = {m["id"] for m in members if m.get("role") in ("ROLE_VOTER", "ROLE_LEADER")}
                if voters == ids and all(m.get("lag") == 0 for m in members):
                    return True, st
        time.sleep(0.5)
    return False, last


def verdict(res, allow_resend_duplicates):
    """True if the run is valid: nothing acked lost, nothing duplicated (with
    `--allow-resend-duplicates`: no duplicate other than of chunks resent after a forwarder
    stored them without acking), no poison failure (an acked poison event missing, a
    poison event stored twice, one the node had to refuse stored), and no chunk acked while a
    majority was down."""
    dups = res["duplicated"]
    if allow_resend_duplicates:
        dups -= res.get("duplicated_resent_via_forwarder", 0)
    return (res["lost"] == 0 and dups == 0 and not poison.failures(res.get("poison") or {})
            and not (res.get("majority_loss") or {}).get("acked_while_lost"))


def majority_loss_windows(ops):
    """[(t0, t1)] per majority-loss fault: from the moment a majority was down (its `start`
    record is written after the last of them) to `restore` (just before the first comes back);
    an interrupted fault's window has no end (None)."""
    out, t0 = [], None
    for op in ops:
        if op.get("kind") != "majority-loss":
            continue
        if op.get("phase") == "start":
            t0 = op["t"]
        elif op.get("phase") == "restore" and t0 is not None:
            out.append((t0, op["t"]))
            t0 = None
    if t0 is not None:
        out.append((t0, None))
    return out


def acks_while_majority_lost(ops, results, grace):
    """Per majority-loss window, the chunks whose ack the client received more than `grace`
    seconds after the majority was down and before it came back (none may be: a write is
    acknowledged once a majority stored it). `grace` covers an ack already on its way when the
    last node went down."""
    out = []
    for t0, t1 in majority_loss_windows(ops):
        acked = sorted((r["t_complete"], r["chunk"], r.get("node")) for r in results
                       if r["outcome"] == "ok" and r["t_complete"] > t0 + grace
                       and (t1 is None or r["t_complete"] < t1))
        out.append(dict(t0=t0, t1=t1, acked_chunks=len(acked),
                        sample=[dict(t=t, chunk=c, node=n) for t, c, n in acked[:5]]))
    return out


def check(bucket, results, events_per_chunk, poison_sends=None, ops=None, via_forwarders=False,
          majority_grace=1.0):
    """Compare the client history (one record per chunk) with the bucket's contents; with
    poison sends (jepsen/poison.py), account for the poison too (`res["poison"]`); with
    majority-loss faults among `ops`, check that nothing was acked while a majority was down
    (`res["majority_loss"]`; not with forwarders, which ack what they stored themselves)."""
    counts, _, objects, other, bad, dead_lettered = read_bucket(bucket)
    acked, unknown, failed = [], [], []
    for r in results:
        rng = range(r["first"], r["first"] + r["count"])
        {"ok": acked, "unknown": unknown, "fail": failed}[r["outcome"]].append((r, rng))
    acked_seqs = [s for _, rg in acked for s in rg]
    lost = [s for s in acked_seqs if counts.get(s, 0) == 0]
    dup = sorted(s for s, n in counts.items() if n > 1)
    where = read_bucket(bucket, set(dup[:10]))[1] if dup else {}
    acked_set = set(acked_seqs)
    unknown_seqs = [s for _, rg in unknown for s in rg]
    unknown_found = [s for s in unknown_seqs if counts.get(s, 0) > 0]
    failed_found = [s for _, rg in failed for s in rg if counts.get(s, 0) > 0]
    sent = acked_set | set(unknown_seqs) | {s for _, rg in failed for s in rg}
    unexpected = sorted(s for s in counts if s not in sent)
    by_seq = {}
    for r, rg in acked + unknown + failed:
        by_seq[r["first"]] = r

    def chunk_of(s):
        first = s - (s % events_per_chunk)
        r = by_seq.get(first)
        return r and {k: r[k] for k in ("chunk", "outcome", "node", "t_invoke", "t_complete", "attempts")}

    def resent_via_forwarder(s):
        """The seq's chunk was written to a forwarder that never acked it, then resent."""
        r = by_seq.get(s - (s % events_per_chunk))
        return bool(r) and any(slot >= FWD_SLOT_BASE and not kind.startswith("connect-")
                               for _, slot, kind in r.get("attempts", []))

    dup_resent = [s for s in dup if resent_via_forwarder(s)]
    res = dict(
        acked_chunks=len(acked), unknown_chunks=len(unknown), failed_chunks=len(failed),
        acked_events=len(acked_seqs), lost=len(lost), duplicated=len(dup),
        duplicated_resent_via_forwarder=len(dup_resent),
        duplicated_acked=sum(1 for s in dup if s in acked_set),
        unknown_events=len(unknown_seqs), unknown_found=len(unknown_found),
        unknown_not_found=len(unknown_seqs) - len(unknown_found),
        never_written_but_found=len(failed_found), unexpected=len(unexpected),
        events_in_bucket=sum(counts.values()), distinct_in_bucket=len(counts),
        events_in_dead_letter=dead_lettered,
        objects=objects, other_files=other[:20], bad_lines=bad[:20],
        lost_sample=[dict(seq=s, chunk=chunk_of(s)) for s in lost[:10]],
        duplicated_sample=[dict(seq=s, count=counts[s], objects=where.get(s, [])[:5], chunk=chunk_of(s))
                           for s in dup[:10]],
    )
    if poison_sends is not None:
        res["poison"] = poison.account(bucket, poison_sends)
    if ops and majority_loss_windows(ops):
        windows = [] if via_forwarders else acks_while_majority_lost(ops, results, majority_grace)
        res["majority_loss"] = dict(
            checked=not via_forwarders, grace=majority_grace, windows=windows,
            acked_while_lost=sum(w["acked_chunks"] for w in windows))
    return res


# ---------------------------------------------------------------------------------------------
# main


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="jepsen/run",
        description="Fault-inject a lograft aggregator cluster and check that every acked "
                    "event is in the bucket exactly once.")
    p.add_argument("--time", type=float, default=60, help="seconds of fault injection (default 60)")
    p.add_argument("--nemesis", default="kill,pause,partition,disk-loss",
                   help="comma list of %s, or 'none' (default: all)" % ",".join(NEMESES))
    p.add_argument("--bin", default=os.environ.get("LOGRAFT_BIN", "target/release/lograft"),
                   help="lograft binary (default $LOGRAFT_BIN or target/release/lograft)")
    p.add_argument("--workdir", help="default /tmp/lograft-jepsen/<timestamp>")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--forwarders", type=int, default=0,
                   help="lograft forwarders between the clients and the cluster (default 0: "
                        "clients write to the aggregators)")
    p.add_argument("--forwarder-flush-interval", default="0.5s")
    p.add_argument("--allow-resend-duplicates", action="store_true",
                   help="with forwarders: report, but do not fail on, duplicates of a chunk the client "
                        "resent after a forwarder stored it without acking (see README)")
    p.add_argument("--lazyfs", action="store_true",
                   help="put every host's data on a lazyfs mount even without power-loss")
    p.add_argument("--lazyfs-bin", default=os.path.join(HERE, "lazyfs", "target", "release", "lazyfs"),
                   help="lazyfs binary (built with cargo from jepsen/lazyfs if missing)")
    p.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--events-per-chunk", type=int, default=50)
    p.add_argument("--pad", type=int, default=32, help="filler bytes per event")
    p.add_argument("--ack-timeout", type=float, default=3,
                   help="seconds to wait for an ack before resending elsewhere (default 3)")
    p.add_argument("--connect-timeout", type=float, default=1)
    p.add_argument("--switch", type=float, default=0.05,
                   help="probability a client moves to a random node for its next chunk")
    p.add_argument("--retry-timeout", type=float, default=60,
                   help="how long a client retries one chunk (same id) before giving up: unknown")
    p.add_argument("--fault-min", type=float, default=3, help="min seconds a fault is held")
    p.add_argument("--fault-max", type=float, default=8)
    p.add_argument("--quiet-min", type=float, default=2, help="min seconds between faults")
    p.add_argument("--quiet-max", type=float, default=5)
    p.add_argument("--leader-bias", type=float, default=0.5,
                   help="probability a kill/pause/partition targets the leader (default 0.5)")
    p.add_argument("--round-robin", action="store_true",
                   help="cycle through the nemeses in order instead of picking at random")
    p.add_argument("--settle", type=float, default=5,
                   help="seconds the workload keeps running after the last heal (default 5)")
    p.add_argument("--idle-timeout", type=float, default=180,
                   help="seconds to wait for the cluster to converge after healing")
    p.add_argument("--seed", type=int)
    p.add_argument("--firewall", choices=["auto", "iptables", "nft"], default="auto")
    p.add_argument("--no-old-id-check", dest="check_old_id_refused", action="store_false",
                   help="skip checking that a wiped node is refused under its old id")
    p.add_argument("--ip-prefix", default="127.0.0")
    p.add_argument("--ip-base", type=int, default=10, help="node N listens on PREFIX.(BASE+N)")
    p.add_argument("--forward-port", type=int, default=24224)
    p.add_argument("--raft-port", type=int, default=7100)
    p.add_argument("--gid-base", type=int, default=47000, help="node in slot N runs as gid BASE+N")
    p.add_argument("--flush-interval", default="0.3s")
    p.add_argument("--heartbeat-interval", default="0.1s")
    p.add_argument("--election-timeout", default="0.5s")
    p.add_argument("--cluster-extra", action="append", default=[],
                   help="extra line for every <cluster> section, e.g. 'snapshot_every 200'")
    p.add_argument("--no-tls", dest="tls", action="store_false",
                   help="plaintext cluster port (default: mutual TLS, certificates from `lograft cluster certs`)")
    p.add_argument("--poison-tag-bytes", type=int, default=65536,
                   help="length of the poison nemesis's long tag (default 65536)")
    p.add_argument("--poison-idle", type=int, default=32,
                   help="idle connections the poison nemesis holds open per window (default 32)")
    p.add_argument("--poison-slow-seconds", type=float, default=2,
                   help="seconds the poison nemesis's slow sender takes per chunk (default 2)")
    p.add_argument("--poison-chunk-size-limit", type=size_arg,
                   help="set in_forward's chunk_size_limit (e.g. 1m) on the entry points; "
                        "the poison nemesis then also sends a complete frame just over it "
                        "(default: lograft's default, no limit but the 512 MiB cap)")
    p.add_argument("--bucket", choices=["dir", "s3"], default="dir",
                   help="where the cluster uploads: a local directory (default) or an S3 bucket "
                        "(moto's server on loopback, behind the s3 nemesis's fault proxy)")
    p.add_argument("--s3-python", default=os.environ.get("LOGRAFT_S3_PYTHON", os.path.join(
        os.path.dirname(HERE), "target", "test-venv", "bin", "python")),
                   help="a Python with moto[server] and boto3, for --bucket s3 (default "
                        "$LOGRAFT_S3_PYTHON or target/test-venv/bin/python, the venv .ci/run makes)")
    p.add_argument("--s3-modes", default=",".join(s3proxy.MODES),
                   help="the s3 nemesis's fault modes, one drawn per window (default: %s; also "
                        "%s: a permanent refusal, which lograft dead-letters)"
                        % (",".join(s3proxy.MODES), ",".join(s3proxy.EXTRA_MODES)))
    p.add_argument("--s3-fault-rate", type=float, default=1.0,
                   help="share of S3 requests an s3 fault window hits (default 1)")
    p.add_argument("--s3-slow-min", type=float, default=0.5,
                   help="slow mode: min seconds before an S3 answer starts (default 0.5)")
    p.add_argument("--s3-slow-max", type=float, default=4.0,
                   help="slow mode: max seconds before an S3 answer starts (default 4)")
    p.add_argument("--majority-loss-grace", type=float, default=0.5,
                   help="an ack received this long after a majority went down may still be one "
                        "given before (default 0.5 s); later ones fail the run")
    p.add_argument("--rust-log", default="info")
    p.add_argument("--leader-poll", type=float, default=1.0,
                   help="seconds between polls of who leads, for the timeline (default 1; 0: off)")
    p.add_argument("--result", help="result JSON path (default WORKDIR/result.json)")
    a = p.parse_args(argv)
    a.nemeses = [] if a.nemesis in ("", "none") else [n.strip() for n in a.nemesis.split(",") if n.strip()]
    for n in a.nemeses:
        if n not in NEMESES:
            p.error("unknown nemesis %r (choose from %s)" % (n, ", ".join(NEMESES)))
    a.use_lazyfs = a.lazyfs or "power-loss" in a.nemeses
    a.s3_modes = [m.strip() for m in a.s3_modes.split(",") if m.strip()]
    for m in a.s3_modes:
        if m not in s3proxy.MODES + s3proxy.EXTRA_MODES:
            p.error("unknown --s3-modes mode %r (choose from %s)" % (
                m, ", ".join(s3proxy.MODES + s3proxy.EXTRA_MODES)))
    if "s3" in a.nemeses and a.bucket != "s3":
        p.error("the s3 nemesis needs --bucket s3")
    if a.bucket == "s3" and not os.access(a.s3_python, os.X_OK):
        p.error("--bucket s3: no Python at %s (--s3-python: one with moto[server] and boto3)" % a.s3_python)
    if not a.ip_prefix.startswith("127."):
        p.error("--ip-prefix must be on 127.0.0.0/8")
    return a


def size_arg(text):
    """`1048576`, `64k`, `1m`, `1g` -> bytes."""
    t = text.strip().lower()
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError("not a size: %r" % text)


def ensure_lazyfs(args):
    """Build jepsen/lazyfs (cargo, its own target dir) if its binary is missing."""
    if os.access(args.lazyfs_bin, os.X_OK):
        return True
    default = os.path.join(HERE, "lazyfs", "target", "release", "lazyfs")
    if os.path.abspath(args.lazyfs_bin) != default:
        log("lazyfs binary not found: %s" % args.lazyfs_bin)
        return False
    log("building lazyfs (cargo build --release in jepsen/lazyfs)")
    r = subprocess.run(["cargo", "build", "--release", "--manifest-path",
                        os.path.join(HERE, "lazyfs", "Cargo.toml")], capture_output=True, text=True)
    if r.returncode != 0 or not os.access(default, os.X_OK):
        log("lazyfs build failed:\n%s" % r.stderr[-3000:])
        return False
    return True


def recheck(workdir):
    """Re-run the checker on a kept work dir (its history.jsonl and bucket/)."""
    with open(os.path.join(workdir, "result.json")) as f:
        result = json.load(f)
    with open(os.path.join(workdir, "history.jsonl")) as f:
        results = [json.loads(l) for l in f]
    res = check(os.path.join(workdir, "bucket"), results, result["events_per_chunk"],
                poison.load_sends(workdir), result.get("nemesis_ops"), bool(result.get("forwarders")),
                result.get("majority_loss_grace", 1.0))
    result.update(res)
    ok = verdict(res, result.get("allow_resend_duplicates", False))
    result["valid"] = ok
    result["exit_code"] = 0 if ok else 1
    path = os.path.join(workdir, "recheck.json")
    write_timeline(result, results, path)
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=str)
    summary(result, path)
    return result["exit_code"]


def cleanup(workdir):
    """After a harness that could not clean up (SIGKILL): remove every lograft-jepsen firewall
    chain/table, and kill the nodes of WORKDIR (pids in WORKDIR/slot*/pid, checked against
    their command line)."""
    code = 0
    if shutil.which("iptables"):
        for table, prefix in (("filter", "LGJ-"), ("mangle", "LGJM-")):
            r = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True)
            chains = sorted({w for line in r.stdout.splitlines() for w in line.split()
                             if w.startswith(prefix)})
            for ch in chains:
                while subprocess.run(["iptables", "-w", "-t", table, "-D", "OUTPUT", "-j", ch],
                                     capture_output=True).returncode == 0:
                    pass
                subprocess.run(["iptables", "-w", "-t", table, "-F", ch], capture_output=True)
                subprocess.run(["iptables", "-w", "-t", table, "-X", ch], capture_output=True)
                print("removed iptables %s chain %s" % (table, ch))
    if shutil.which("nft"):
        r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            w = line.split()
            if len(w) == 3 and w[1] == "inet" and w[2].startswith("lograft_jepsen_"):
                subprocess.run(["nft", "delete", "table", "inet", w[2]])
                print("removed nft table %s" % w[2])
    if workdir:
        workdir = os.path.abspath(workdir)
        for name in sorted(os.listdir(workdir)):
            pidfile = os.path.join(workdir, name, "pid")
            if not (name.startswith(("slot", "fwd")) and os.path.exists(pidfile)):
                continue
            pid = int(open(pidfile).read())
            try:
                cmd = open("/proc/%d/cmdline" % pid, "rb").read().decode(errors="replace")
            except OSError:
                continue
            if "lograft" in cmd and workdir in cmd:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
                print("killed node pid %d (%s)" % (pid, name))
        moto = os.path.join(workdir, "moto.pid")  # --bucket s3: moto's S3 server
        if os.path.exists(moto):
            pid = int(open(moto).read())
            try:
                cmd = open("/proc/%d/cmdline" % pid, "rb").read().decode(errors="replace")
            except OSError:
                cmd = ""
            if "moto.server" in cmd:
                os.kill(pid, signal.SIGKILL)
                print("killed moto pid %d" % pid)
        for name in sorted(os.listdir(workdir)):
            pidfile = os.path.join(workdir, name, "lazyfs.pid")
            if os.path.exists(pidfile):
                pid = int(open(pidfile).read())
                try:
                    cmd = open("/proc/%d/cmdline" % pid, "rb").read().decode(errors="replace")
                except OSError:
                    cmd = ""
                if "lazyfs" in cmd and workdir in cmd:
                    os.kill(pid, signal.SIGKILL)
                    print("killed lazyfs pid %d (%s)" % (pid, name))
            mnt = os.path.join(workdir, name, "disk")
            if os.path.ismount(mnt):
                subprocess.run(["umount", "-l", mnt])
                print("unmounted %s" % mnt)
    return code


def main(argv=None):
    global _log_file
    argv = argv if argv is not None else sys.argv[1:]
    if argv[:1] == ["--cleanup"]:
        return cleanup(argv[1] if len(argv) > 1 else None)
    if argv[:1] == ["--recheck"]:
        if len(argv) != 2:
            print("usage: jepsen/run --recheck WORKDIR", file=sys.stderr)
            return 2
        return recheck(argv[1])
    args = parse_args(argv)
    args.bin = os.path.abspath(args.bin)
    if not os.access(args.bin, os.X_OK):
        print("lograft binary not found: %s (set LOGRAFT_BIN or --bin)" % args.bin, file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    args.seed_used = seed
    rng = random.Random(seed)
    run_id = "j%x" % (int(time.time()) & 0xFFFFFFF)
    workdir = os.path.abspath(args.workdir or os.path.join(
        "/tmp/lograft-jepsen", time.strftime("%Y%m%dT%H%M%S")))
    if os.path.exists(workdir) and os.listdir(workdir):
        print("work dir %s is not empty" % workdir, file=sys.stderr)
        return 2
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    _log_file = open(os.path.join(workdir, "harness.log"), "a")
    result_path = args.result or os.path.join(workdir, "result.json")

    def on_term(signum, frame):
        raise Stop("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    log("lograft-jepsen: bin %s, work dir %s, nemeses %s, %ss, seed %d, forwarders %d, bucket %s%s%s" % (
        args.bin, workdir, ",".join(args.nemeses) or "none", args.time, seed, args.forwarders, args.bucket,
        ", lazyfs disks" if args.use_lazyfs else "",
        ", LOGRAFT_SKIP_FSYNC=%s" % os.environ["LOGRAFT_SKIP_FSYNC"] if os.environ.get("LOGRAFT_SKIP_FSYNC") else ""))
    if args.use_lazyfs and not ensure_lazyfs(args):
        return 2
    cluster = Cluster(args, workdir)
    fw = None
    fw_note = None
    kinds = list(args.nemeses)
    workload = None
    nemesis = None
    watch = LeaderWatch(cluster, args.leader_poll)
    result = dict(bin=args.bin, workdir=workdir, seed=seed, run_id=run_id, nemeses=args.nemeses,
                  time=args.time, nodes=args.nodes, forwarders=args.forwarders, clients=args.clients,
                  lazyfs=args.use_lazyfs, skip_fsync=os.environ.get("LOGRAFT_SKIP_FSYNC"),
                  allow_resend_duplicates=args.allow_resend_duplicates,
                  events_per_chunk=args.events_per_chunk, bucket=args.bucket,
                  majority_loss_grace=args.majority_loss_grace)
    code = 2
    try:
        if "partition" in kinds:
            fw, fw_note = setup_firewall(args.firewall, {s.slot: s.gid for s in cluster.slots.values()},
                                         {s.slot: s.ip for s in cluster.slots.values()})
            if fw is None:
                log("PARTITION NEMESIS DISABLED: %s" % fw_note)
                kinds.remove("partition")
            else:
                log(fw_note)
        result["partition"] = fw_note
        result["nemeses_run"] = kinds
        cluster.start()
        watch.start()
        workload = Workload(cluster, args, run_id, seed)
        workload.start()
        poisoner = None
        if "poison" in kinds:
            poisoner = poison.Poisoner(run_id, TAG, cluster.entry_points,
                                       os.path.join(workdir, "poison.jsonl"), args, rng,
                                       lambda: time.monotonic() - _T0)
        nemesis = Nemesis(cluster, fw, args, rng, poisoner)
        t_start = time.monotonic()
        if kinds:
            nemesis.run(kinds, args.time, workload)
        else:
            time.sleep(args.time)
        log("fault phase over after %.1fs; healing everything" % (time.monotonic() - t_start))
        healed = nemesis.heal_all()
        cluster.check_crashes()
        c0, _ = workload.stats()
        time.sleep(args.settle)
        c1, _ = workload.stats()
        log("after healing: %d more chunks acked in %.0fs" % (c1["ok"] - c0["ok"], args.settle))
        if c1["ok"] == c0["ok"] and healed:
            # Give a slow (debug-build) cluster a bit longer before calling it unavailable.
            wait_for(lambda: workload.stats()[0]["ok"] > c0["ok"], 60, 0.5)
            if workload.stats()[0]["ok"] == c0["ok"]:
                cluster.anomaly("no-writes-after-heal", waited=args.settle + 60)
        log("stopping the workload (in-flight chunks are retried for up to %ss)" % args.retry_timeout)
        stuck = workload.finish(args.retry_timeout + args.ack_timeout + 30)
        if stuck:
            cluster.anomaly("clients-stuck", threads=stuck)
        log("waiting for the cluster to converge (nothing pending/unconfirmed, all voters caught up)")
        t_idle = time.monotonic()
        idle, last = wait_idle(cluster, args.idle_timeout)
        result["converge_seconds"] = round(time.monotonic() - t_idle, 1)
        log("converged: %s after %.1fs" % (idle, result["converge_seconds"]))
        watch.stop()
        if not idle:
            cluster.anomaly("not-converged", timeout=args.idle_timeout, leader_status=last)
        time.sleep(1)  # a last upload racing the status poll
        for f in cluster.forwarders.values():
            chunks, quarantined = f.buffered()
            if quarantined:
                cluster.anomaly("forwarder-quarantined", forwarder=f.node_id, files=quarantined[:5])
        for s in cluster.hosts():
            text = tail(s.log_path, 100000)
            if "panicked" in text:
                cluster.anomaly("panic-in-log", slot=s.slot, node_id=s.node_id, log=s.log_path,
                                lines=[l for l in text.splitlines() if "panicked" in l][:3])
        if cluster.s3:
            # The checker reads the bucket through the S3 API (list_objects_v2 + get_object),
            # straight from moto, not through the proxy; the snapshot is kept for --recheck.
            log("reading the S3 bucket back (boto3, %s) into %s" % (cluster.s3.moto_endpoint, cluster.bucket))
            result["s3"] = dict(cluster.s3.download(cluster.bucket), proxy=cluster.s3.proxy.counts())
        res = check(cluster.bucket, workload.results, args.events_per_chunk,
                    poisoner.sends if poisoner else None, nemesis.ops, bool(args.forwarders),
                    args.majority_loss_grace)
        result.update(res)
        if poisoner:
            poison_anomalies(cluster, res["poison"], nemesis.ops, workload.results, result)
        result["converged"] = idle
        result["leader_status"] = last
        result["attempt_errors"] = dict(workload.attempt_errors)
        result["nemesis_ops"] = nemesis.ops
        result["anomalies"] = cluster.anomalies
        ok = verdict(res, args.allow_resend_duplicates)
        code = 0 if ok and not cluster.anomalies else (1 if not ok else 2)
        result["valid"] = ok
        result["exit_code"] = code
    except (KeyboardInterrupt, Stop) as e:
        log("interrupted (%s); cleaning up" % (str(e) or "Ctrl-C"))
        result["interrupted"] = True
        code = 130
        result["exit_code"] = code
    except Exception as e:  # noqa: BLE001
        log("harness error: %s\n%s" % (e, traceback.format_exc()))
        result["harness_error"] = str(e)
        result["anomalies"] = cluster.anomalies
        code = 2
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if nemesis:
                nemesis.release()
        except Exception as e:  # noqa: BLE001
            log("heal during cleanup failed: %s" % e)
        if fw:
            fw.uninstall()
            log("firewall rules removed")
        if workload:
            workload.stop.set()
        watch.stop()
        cluster.stop_all()
        if workload:
            with open(os.path.join(workdir, "history.jsonl"), "w") as f:
                for r in workload.results:
                    f.write(json.dumps(r) + "\n")
        if nemesis:
            result.setdefault("nemesis_ops", nemesis.ops)
        result["leader_watch"] = watch.record()
        write_timeline(result, workload.results if workload else [], result_path)
        with open(result_path, "w") as f:
            json.dump(result, f, indent=2, default=str)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    summary(result, result_path)
    return code


def poison_anomalies(cluster, pres, ops, history, result):
    """Poison outcomes that are not lost or duplicated events but must not happen: a frame the
    node had to close on was acked, a poison sender failed, and a poison window of 3 s or more
    in which no innocent chunk was acked (poison stopped innocent traffic)."""
    if pres.get("unexpected_acks"):
        cluster.anomaly("poison-acked-malformed", sends=pres["samples"].get("unexpected_acks"))
    if pres.get("harness-error"):
        cluster.anomaly("poison-sender-failed", count=pres["harness-error"])
    windows = poison.innocent_acks_in_windows(ops, history)
    result["poison_windows"] = [dict(t0=a, t1=b, innocent_chunks_acked=n) for a, b, n in windows]
    for a, b, n in windows:
        if n == 0 and b - a >= 3:
            cluster.anomaly("poison-stalled-innocent-traffic", t0=a, t1=b)


def write_timeline(result, history, result_path):
    """Draw the run's timeline (jepsen/timeline.py) next to `result_path`; its path goes into
    `result["timeline"]`. A drawing failure is logged, never fails the run."""
    path = os.path.join(os.path.dirname(os.path.abspath(result_path)), "timeline.svg")
    try:
        result["timeline"] = timeline.write(path, result, history)
    except Exception as e:  # noqa: BLE001
        log("timeline not written: %s\n%s" % (e, traceback.format_exc()))
        result["timeline_error"] = str(e)


def summary(r, path):
    print()
    print("=" * 72)
    if r.get("interrupted") or r.get("harness_error"):
        print("run did not complete: %s" % (r.get("harness_error") or "interrupted"))
    else:
        print("nemeses %s for %ss (seed %s), %d fault ops" % (
            ",".join(r.get("nemeses_run", [])) or "none", r["time"], r["seed"],
            sum(1 for o in r.get("nemesis_ops", []) if o["phase"] == "start")))
        if r.get("partition") and "partition" in r.get("nemeses", []):
            print("partition: %s" % r["partition"])
        print("chunks: %d acked, %d unknown, %d never delivered" % (
            r["acked_chunks"], r["unknown_chunks"], r["failed_chunks"]))
        print("acked events:      %d" % r["acked_events"])
        print("lost:              %d" % r["lost"])
        print("duplicated:        %d (of them acked: %d; of chunks resent after a forwarder stored "
              "them without acking: %d%s)" % (
                  r["duplicated"], r["duplicated_acked"], r.get("duplicated_resent_via_forwarder", 0),
                  ", allowed" if r.get("allow_resend_duplicates") else ""))
        print("unknown events:    %d (found %d, not found %d)" % (
            r["unknown_events"], r["unknown_found"], r["unknown_not_found"]))
        print("bucket:            %d objects, %d events (%d in the dead-letter area), %d unexpected" % (
            r["objects"], r["events_in_bucket"], r.get("events_in_dead_letter", 0), r["unexpected"]))
        if r.get("poison") is not None:
            for line in poison.summary_lines(r["poison"]):
                print(line)
        if r.get("s3"):
            s3 = r["s3"]
            faulted = {k: v for k, v in (s3.get("proxy") or {}).items() if k != "passed"}
            print("s3 bucket:         %d objects read through the S3 API; proxy: %d requests passed, "
                  "faulted %s" % (s3.get("objects", 0), (s3.get("proxy") or {}).get("passed", 0),
                                  json.dumps(faulted, sort_keys=True)))
        ml = r.get("majority_loss")
        if ml:
            print("majority lost:     %d windows (%s), %s" % (
                len(ml["windows"]) if ml["checked"] else sum(
                    1 for o in r.get("nemesis_ops", []) if o["kind"] == "majority-loss" and o["phase"] == "start"),
                ", ".join("%.1f-%.1fs" % (w["t0"], w["t1"] or -1) for w in ml["windows"]) or "-",
                ("%d chunks acked while it was lost (after %.1fs grace)" % (ml["acked_while_lost"], ml["grace"]))
                if ml["checked"] else "not checked (forwarders ack on their own)"))
        print("converged:         %s" % r.get("converged"))
        for a in r.get("anomalies", []):
            print("anomaly:           %s %s" % (a["kind"], json.dumps(
                {k: v for k, v in a.items() if k not in ("kind", "log_tail", "leader_status")})[:300]))
        pfail = poison.failures(r.get("poison") or {})
        print("VALID" if r.get("valid") else "INVALID: %s" % "; ".join(
            ([] if not (r["lost"] or r["duplicated"]) else ["acked events lost or duplicated"])
            + (["poison failures %s" % json.dumps(pfail)] if pfail else [])
            + (["chunks acked while a majority was down"] if (ml or {}).get("acked_while_lost") else [])))
        if r.get("valid") and r.get("duplicated"):
            print("(VALID only because of --allow-resend-duplicates: %d duplicated events)" % r["duplicated"])
    print("result: %s   (exit %s)" % (path, r.get("exit_code", "-")))
    if r.get("timeline"):
        print("timeline: %s" % r["timeline"])
    print("=" * 72)


if __name__ == "__main__":
    sys.exit(main())
