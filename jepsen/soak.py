#!/usr/bin/env python3
"""jepsen/soak.py (`jepsen/soak`): many harness runs in a row, one table.

Runs `jepsen/run` (lograft_jepsen.py) `--runs` times with seeds `--seed`, `--seed`+1, ...,
rotating over nemesis sets (`--set`, repeatable; default `DEFAULT_SETS`, every nemesis), each
for `--time` seconds. A failing run (exit 1 or 2, or a run that did not complete) does not stop
the soak. At the end it prints ONE markdown table — per nemesis set: runs, acknowledged events,
lost, duplicated, failures (and which seeds) — and writes a JSON summary (every run's numbers
and the table). Work dirs of runs that passed are removed unless `--keep` (disk); failing ones
are kept. Exit 0 if every run passed, 1 otherwise.

Owns the rotation, the aggregation and the table; it must not inject or check anything itself
(each run is a whole `jepsen/run`). Stdlib only.
"""

import argparse
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

DEFAULT_SETS = (
    "kill,pause,partition,disk-loss",
    "s3",
    "kill,s3",
    "majority-loss",
    "double-fault",
    "leader-disk-loss",
    "power-loss",
    "poison,kill",
    "kill,pause,partition,disk-loss,power-loss,poison,s3,majority-loss,double-fault,leader-disk-loss",
)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="jepsen/soak",
        description="Run the fault harness N times over rotating nemesis sets; print one table.",
        epilog="Arguments after `--` go to every run (e.g. -- --heartbeat-interval 0.3s).")
    p.add_argument("--runs", type=int, default=10, help="number of runs (default 10)")
    p.add_argument("--time", type=float, default=30, help="--time of each run (default 30 s)")
    p.add_argument("--set", action="append", dest="sets", metavar="NEMESES",
                   help="a nemesis set (comma list, as --nemesis); repeat to rotate over several "
                        "(default: %s)" % " | ".join(DEFAULT_SETS))
    p.add_argument("--forwarders", type=int, default=0, help="--forwarders of each run")
    p.add_argument("--bucket", choices=["auto", "dir", "s3"], default="auto",
                   help="auto (default): s3 for sets with the s3 nemesis, dir for the others")
    p.add_argument("--seed", type=int, help="seed of the first run (the others: +1, +2, ...)")
    p.add_argument("--bin", help="lograft binary (default: jepsen/run's)")
    p.add_argument("--workdir", help="default /tmp/lograft-jepsen/soak-<timestamp>")
    p.add_argument("--summary", help="JSON summary path (default WORKDIR/soak.json)")
    p.add_argument("--keep", action="store_true", help="keep the work dirs of runs that passed")
    p.add_argument("--harness", default=os.path.join(HERE, "lograft_jepsen.py"),
                   help=argparse.SUPPRESS)  # the tests put a stand-in here
    argv = list(argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    a = p.parse_args(argv)
    a.extra = extra
    a.sets = a.sets or list(DEFAULT_SETS)
    return a


def run_command(args, nemeses, seed, workdir):
    cmd = [sys.executable, args.harness, "--time", str(args.time),
           "--nemesis", nemeses, "--seed", str(seed), "--workdir", workdir]
    if args.forwarders:
        cmd += ["--forwarders", str(args.forwarders)]
    bucket = args.bucket if args.bucket != "auto" else (
        "s3" if "s3" in nemeses.split(",") else "dir")
    if bucket == "s3":
        cmd += ["--bucket", "s3"]
    if args.bin:
        cmd += ["--bin", args.bin]
    return cmd + args.extra


def run_record(nemeses, seed, code, result, workdir):
    """One run's line of the summary (from its result.json; `result` None: none written)."""
    r = result or {}
    return dict(
        nemeses=nemeses, seed=seed, exit=code, workdir=workdir,
        completed=bool(result) and not r.get("interrupted") and not r.get("harness_error")
        and "acked_events" in r,
        acked_events=r.get("acked_events", 0), lost=r.get("lost", 0),
        duplicated=r.get("duplicated", 0), valid=r.get("valid"),
        faults=sum(1 for o in r.get("nemesis_ops", []) if o.get("phase") == "start"),
        anomalies=sorted({a.get("kind") for a in r.get("anomalies", [])}),
        harness_error=r.get("harness_error"))


def aggregate(records):
    """Per nemesis set (in first-run order), then a total row: dict(nemeses, runs, acked_events,
    lost, duplicated, failures, failed_seeds). A failure is a run that exited non-zero."""
    rows = collections.OrderedDict()
    for rec in records:
        row = rows.setdefault(rec["nemeses"], dict(nemeses=rec["nemeses"], runs=0, acked_events=0,
                                                   lost=0, duplicated=0, failures=0, failed_seeds=[]))
        row["runs"] += 1
        row["acked_events"] += rec["acked_events"]
        row["lost"] += rec["lost"]
        row["duplicated"] += rec["duplicated"]
        if rec["exit"] != 0:
            row["failures"] += 1
            row["failed_seeds"].append("%s (exit %s%s)" % (
                rec["seed"], rec["exit"], ": " + ",".join(rec["anomalies"]) if rec["anomalies"] else ""))
    out = list(rows.values())
    total = dict(nemeses="**all**", runs=0, acked_events=0, lost=0, duplicated=0, failures=0,
                 failed_seeds=[])
    for row in out:
        for k in ("runs", "acked_events", "lost", "duplicated", "failures"):
            total[k] += row[k]
    return out + [total]


def table(rows):
    """The markdown table of `aggregate`'s rows."""
    lines = ["| nemesis set | runs | acked events | lost | duplicated | failures | failing seeds (exit) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["nemeses"] if r["nemeses"].startswith("**") else "`%s`" % r["nemeses"]
        lines.append("| %s | %d | %d | %d | %d | %d | %s |" % (
            name, r["runs"], r["acked_events"], r["lost"], r["duplicated"], r["failures"],
            ", ".join(r["failed_seeds"]) or "-"))
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    base = os.path.abspath(args.workdir or os.path.join(
        "/tmp/lograft-jepsen", "soak-" + time.strftime("%Y%m%dT%H%M%S")))
    os.makedirs(base, exist_ok=True)
    summary_path = args.summary or os.path.join(base, "soak.json")
    seed0 = args.seed if args.seed is not None else random.randrange(1 << 30)
    records = []
    started = time.time()
    interrupted = False
    for i in range(args.runs):
        nemeses = args.sets[i % len(args.sets)]
        seed = seed0 + i
        workdir = os.path.join(base, "run%03d" % (i + 1))
        cmd = run_command(args, nemeses, seed, workdir)
        print("soak: run %d/%d: %s" % (i + 1, args.runs, " ".join(cmd[1:])), flush=True)
        out_path = os.path.join(base, "run%03d.out" % (i + 1))
        t0 = time.monotonic()
        try:
            with open(out_path, "w") as out:
                code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
        except KeyboardInterrupt:
            interrupted = True
            code = 130
        result = None
        try:
            with open(os.path.join(workdir, "result.json")) as f:
                result = json.load(f)
        except (OSError, ValueError):
            pass
        rec = run_record(nemeses, seed, code, result, workdir)
        rec["seconds"] = round(time.monotonic() - t0, 1)
        records.append(rec)
        print("soak: run %d: exit %d, %d acked, %d lost, %d duplicated%s (%.0fs)" % (
            i + 1, code, rec["acked_events"], rec["lost"], rec["duplicated"],
            ", anomalies " + ",".join(rec["anomalies"]) if rec["anomalies"] else "", rec["seconds"]),
            flush=True)
        if code == 0 and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            rec["workdir"] = None
        if interrupted:
            break
    rows = aggregate(records)
    text = table(rows)
    with open(summary_path, "w") as f:
        json.dump(dict(started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                       seconds=round(time.time() - started), time=args.time,
                       forwarders=args.forwarders, seed=seed0,
                       bin=args.bin or os.environ.get("LOGRAFT_BIN"), extra=args.extra,
                       interrupted=interrupted, table=rows, runs=records), f, indent=2)
    print()
    print(text)
    print()
    print("soak summary: %s" % summary_path)
    if interrupted:
        return 130
    return 0 if all(r["exit"] == 0 for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
