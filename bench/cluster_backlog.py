#!/usr/bin/env python3
"""bench/cluster_backlog.py: the aggregator cluster's memory while its bucket is unreachable and
a large backlog of committed chunks piles up, and the drain once the bucket is back.

Three `lograft run` nodes with <cluster> upload through `@type s3` to moto's S3 server on
loopback, behind jepsen/s3proxy.py's fault proxy (jepsen/s3bucket.py starts both). The run:

1. the proxy resets every connection (the bucket is unreachable);
2. `lograft bench-load` sends BYTES of events to the leader's in_forward and waits for every
   ack (each ack = committed on a majority and applied);
3. the proxy heals; the leader uploads the backlog;
4. the bucket is read back through the S3 API: the lines must equal the events sent and no two
   objects may hold the same Raft index range (nothing lost, nothing twice).

Every node's RSS (VmRSS) is sampled every second from start to end into a CSV beside the
report, with RocksDB's share of it (lograft_cluster_storage_memory_bytes from each node's
/metrics: memtables, table readers, block cache) and the allocator's count of the heap
(lograft_process_heap_bytes: allocated, active, resident). Exit status 1 if a sample is above --rss-limit-mb or the bucket check fails.

Usage (moto and boto3 come from the test venv that .ci/run makes):
    target/test-venv/bin/python bench/cluster_backlog.py [--gb 5] [--bin target/release/lograft]
"""

import argparse
import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "jepsen"))
import s3bucket  # noqa: E402  (jepsen/s3bucket.py: moto + the fault proxy)

EVENTS_PER_CHUNK = 1000
RECORD_SIZE = 170
# bench-load's entries: the record plus the entry's array header and EventTime ext (~13 bytes).
ENTRY_BYTES = RECORD_SIZE + 13


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("port %d not up" % port)


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def rss_parts_mb(pid):
    """(RssAnon, RssFile) in MB: the process's own memory and the mapped files (mostly its
    program text, shared with the page cache)."""
    parts = {"RssAnon:": 0.0, "RssFile:": 0.0}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key = line.split(None, 1)[0]
                if key in parts:
                    parts[key] = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return parts["RssAnon:"], parts["RssFile:"]


class Cluster:
    def __init__(self, binary, work, endpoint, extra, log_level="warn"):
        self.binary, self.work = binary, work
        self.fwd = [free_port() for _ in range(3)]
        self.raft = [free_port() for _ in range(3)]
        self.metrics = [free_port() for _ in range(3)]
        members = "".join("<member>\n  id %d\n  address 127.0.0.1:%d\n</member>\n" % (i + 1, p)
                          for i, p in enumerate(self.raft))
        buffer = "  <buffer tag>\n    flush_interval 1s\n    retry_max_interval 5s\n  </buffer>\n"
        self.procs = []
        for i in range(3):
            conf = os.path.join(work, "node%d.conf" % (i + 1))
            with open(conf, "w") as f:
                f.write("<source>\n  @type forward\n  bind 127.0.0.1\n  port %d\n</source>\n" % self.fwd[i])
                f.write("<source>\n  @type prometheus\n  bind 127.0.0.1\n  port %d\n</source>\n" % self.metrics[i])
                f.write(s3bucket.match_text(endpoint, buffer))
                f.write("<cluster>\n  node_id %d\n  address 127.0.0.1:%d\n  data_dir %s\n%s%s</cluster>\n" % (
                    i + 1, self.raft[i], os.path.join(work, "node%d" % (i + 1)), extra, members))
            log = open(os.path.join(work, "node%d.log" % (i + 1)), "ab")
            self.procs.append(subprocess.Popen([binary, "run", "-c", conf, "--log-level", log_level],
                                               stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        for p in self.fwd:
            wait_port(p)

    def status(self):
        for p in self.raft:
            r = subprocess.run([self.binary, "cluster", "status", "--json", "--node", "127.0.0.1:%d" % p],
                               capture_output=True, text=True)
            if r.returncode == 0:
                s = json.loads(r.stdout)
                if s.get("leader_id"):
                    return s
        return None

    def leader(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.status()
            if s and s["leader_id"]:
                return s["leader_id"]
            time.sleep(0.2)
        raise RuntimeError("no leader")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Sampler(threading.Thread):
    """VmRSS of every node (and its anonymous / file-backed split, and RocksDB's share), once a
    second, with the phase it was taken in."""

    def __init__(self, cluster, path):
        super().__init__(daemon=True)
        self.cluster, self.path = cluster, path
        self.phase = "start"
        self.stop_event = threading.Event()
        self.peak = {}  # phase -> [mb per node]
        self.t0 = time.monotonic()

    def run(self):
        with open(self.path, "w") as f:
            f.write("seconds,phase,node1_rss_mb,node2_rss_mb,node3_rss_mb,%s,%s,unix_s\n" % (",".join(
                "node%d_%s_mb" % (i + 1, part) for i in range(3) for part in STORAGE_PARTS), ",".join(
                "node%d_rss_%s_mb" % (i + 1, kind) for i in range(3) for kind in ("anon", "file"))))
            while not self.stop_event.is_set():
                row = [rss_mb(p.pid) or 0.0 for p in self.cluster.procs]
                storage = [storage_mb(port) for port in self.cluster.metrics]
                peak = self.peak.setdefault(self.phase, [0.0] * 3)
                for i, v in enumerate(row):
                    peak[i] = max(peak[i], v)
                split = [rss_parts_mb(p.pid) for p in self.cluster.procs]
                f.write("%.1f,%s,%s,%s,%s,%.1f\n" % (time.monotonic() - self.t0, self.phase,
                                                ",".join("%.1f" % v for v in row),
                                                ",".join("%.1f" % s[part] for s in storage for part in STORAGE_PARTS),
                                                ",".join("%.1f,%.1f" % parts for parts in split),
                                                time.time()))
                f.flush()
                self.stop_event.wait(1.0)


# RocksDB's parts (lograft_cluster_storage_memory_bytes) and the allocator's count of the heap
# (lograft_process_heap_bytes, as heap_<part>): live bytes against the pages jemalloc holds.
STORAGE_PARTS = ("memtables", "table_readers", "block_cache", "heap_allocated", "heap_active", "heap_resident")


def storage_mb(port):
    """RocksDB's memory by part and the heap's (MB) from a node's /metrics; zeros if it does not answer."""
    parts = dict.fromkeys(STORAGE_PARTS, 0.0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
            c.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            text = b"".join(iter(lambda: c.recv(65536), b"")).decode(errors="replace")
    except OSError:
        return parts
    for m in re.finditer(r'^lograft_(cluster_storage_memory|process_heap)_bytes\{part="(\w+)"\} (\S+)$', text, re.M):
        key = ("heap_" if m.group(1) == "process_heap" else "") + m.group(2)
        if key in parts:
            parts[key] = float(m.group(3)) / 1e6
    return parts


def check_bucket(bucket, dest, events):
    summary = bucket.download(dest)
    lines, ranges = 0, []
    for dirpath, _, files in os.walk(dest):
        for name in files:
            m = re.match(r"(\d+)-(\d+)\.log(\.gz)?$", name)
            if not m or "dead-letter" in dirpath:
                raise RuntimeError("unexpected object %s" % os.path.join(dirpath, name))
            ranges.append((int(m.group(1)), int(m.group(2))))
            with (gzip.open if m.group(3) else open)(os.path.join(dirpath, name), "rb") as f:
                lines += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    ranges.sort()
    overlaps = [(a, b) for a, b in zip(ranges, ranges[1:]) if b[0] <= a[1]]
    return summary["objects"], lines, overlaps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/lograft"))
    ap.add_argument("--gb", type=float, default=5.0, help="bytes of events committed while the bucket is down (GB)")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--content", default="logs", choices=["logs", "padded", "random"],
                    help="what the records hold (bench-load --content): how well chunks compress")
    ap.add_argument("--rss-limit-mb", type=float, default=64.0)
    ap.add_argument("--cluster-extra", default="  snapshot_every 5000\n",
                    help="lines added to every <cluster> section")
    ap.add_argument("--out", default=None, help="directory for the RSS CSV and the report (default: the work dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--log-level", default="warn",
                    help="the nodes' log level (info: their snapshot and purge lines, to match against the RSS samples)")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="lograft-backlog.")
    out = args.out or work
    os.makedirs(out, exist_ok=True)
    events = int(args.gb * 1e9 / ENTRY_BYTES) // EVENTS_PER_CHUNK * EVENTS_PER_CHUNK
    bucket = s3bucket.S3Bucket(sys.executable, os.path.join(work, "moto.log")).start()
    cluster = None
    failed = False
    try:
        bucket.proxy.set_fault("reset")
        cluster = Cluster(args.bin, work, bucket.endpoint, args.cluster_extra, args.log_level)
        leader = cluster.leader()
        sampler = Sampler(cluster, os.path.join(out, "backlog-rss.csv"))
        sampler.start()
        print("machine: %d cores, %s" % (os.cpu_count(), os.uname().release))
        print("backlog: bucket unreachable (every connection reset); %d events (~%.1f GB of entries) "
              "-> leader node %d, %d connections x %d in flight"
              % (events, events * ENTRY_BYTES / 1e9, leader, args.connections, args.pipeline), flush=True)
        sampler.phase = "load"
        t0 = time.monotonic()
        subprocess.run([args.bin, "bench-load", "--target", "127.0.0.1:%d" % cluster.fwd[leader - 1],
                        "--tag", "test.backlog", "--events", str(events),
                        "--events-per-chunk", str(EVENTS_PER_CHUNK), "--record-size", str(RECORD_SIZE),
                        "--content", args.content,
                        "--connections", str(args.connections), "--pipeline", str(args.pipeline)],
                       check=True, timeout=max(600, events / 20_000))
        loaded = time.monotonic() - t0
        s = cluster.status()
        committed = s["pending_bytes"] + s["sealed_bytes"]
        print("backlog: all acked in %.1f s; committed and not uploaded: %d chunks, %.2f GB"
              % (loaded, s["pending_chunks"] + s["sealed_chunks"], committed / 1e9), flush=True)
        sampler.phase = "held"
        time.sleep(10)
        sampler.phase = "drain"
        bucket.proxy.clear()
        t1 = time.monotonic()
        while True:
            s = cluster.status()
            if s and s["pending_chunks"] == 0 and s["unconfirmed_batches"] == 0:
                break
            time.sleep(1)
        drained = time.monotonic() - t1
        sampler.phase = "done"
        time.sleep(2)
        sampler.stop_event.set()
        sampler.join()
        print("backlog: bucket back, drained in %.1f s (%.0f events/s)" % (drained, events / drained))
        for phase in ("load", "held", "drain", "done"):
            peak = sampler.peak.get(phase, [0, 0, 0])
            print("backlog: peak_rss_mb phase=%s %s" % (phase, " ".join("node%d=%.1f" % (i + 1, v) for i, v in enumerate(peak))))
        worst = max(max(v) for v in sampler.peak.values())
        objects, lines, overlaps = check_bucket(bucket, os.path.join(work, "bucket"), events)
        print("backlog: bucket objects=%d lines=%d (expected %d) overlapping ranges=%d"
              % (objects, lines, events, len(overlaps)))
        if lines != events or overlaps:
            print("backlog: FAIL: the bucket does not hold every event exactly once", file=sys.stderr)
            failed = True
        if worst > args.rss_limit_mb:
            print("backlog: FAIL: a node's RSS reached %.1f MB (limit %.0f MB)" % (worst, args.rss_limit_mb),
                  file=sys.stderr)
            failed = True
        print("backlog: rss samples in %s" % os.path.join(out, "backlog-rss.csv"))
    except subprocess.TimeoutExpired:
        s = cluster.status() if cluster else None
        print("backlog: FAIL: the load did not finish in time (bench-load does not resend: did the "
              "leader change? status: %s)" % (s and {k: s[k] for k in ("leader_id", "term", "last_log_index")}),
              file=sys.stderr)
        failed = True
    finally:
        if cluster:
            cluster.stop()
        bucket.stop()
        for i in range(3):
            log = os.path.join(work, "node%d.log" % (i + 1))
            if os.path.exists(log):
                errors = [l for l in open(log, errors="replace") if "ERROR" in l]
                if errors:
                    print("node%d: %d error lines, first: %s" % (i + 1, len(errors), errors[0].strip()[:300]))
        if not args.keep:
            for name in os.listdir(work):
                if name.startswith("node") and os.path.isdir(os.path.join(work, name)):
                    shutil.rmtree(os.path.join(work, name), ignore_errors=True)
            shutil.rmtree(os.path.join(work, "bucket"), ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
