"""Tests of jepsen/soak.py without lograft: the aggregation and the markdown table, the command
each run gets (bucket per set, forwarders, arguments after `--`), and a whole soak against a
stand-in harness (a script that writes a result.json and exits as told) that fails one run:
the soak goes on, counts it, keeps its work dir, removes the others and exits 1.

    python3 -m unittest jepsen/test_soak.py      # from the repo root
"""

import json
import os
import sys
import tempfile
import unittest
import contextlib
import io

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import soak  # noqa: E402


def rec(nemeses, seed, code, acked, lost=0, dup=0, anomalies=()):
    return dict(nemeses=nemeses, seed=seed, exit=code, acked_events=acked, lost=lost,
                duplicated=dup, anomalies=list(anomalies))


class AggregateTest(unittest.TestCase):
    def test_sums_per_set_in_first_run_order_with_a_total_row(self):
        rows = soak.aggregate([
            rec("s3", 1, 0, 100),
            rec("kill,s3", 2, 1, 200, lost=3),
            rec("s3", 3, 2, 50, anomalies=["not-converged"]),
            rec("kill,s3", 4, 0, 20, dup=5),
            rec("s3", 5, 0, 7),
        ])
        self.assertEqual([r["nemeses"] for r in rows], ["s3", "kill,s3", "**all**"])
        s3, ks3, total = rows
        self.assertEqual((s3["runs"], s3["acked_events"], s3["lost"], s3["duplicated"], s3["failures"]),
                         (3, 157, 0, 0, 1))
        self.assertEqual(s3["failed_seeds"], ["3 (exit 2: not-converged)"])
        self.assertEqual((ks3["runs"], ks3["acked_events"], ks3["lost"], ks3["duplicated"], ks3["failures"]),
                         (2, 220, 3, 5, 1))
        self.assertEqual(ks3["failed_seeds"], ["2 (exit 1)"])
        self.assertEqual((total["runs"], total["acked_events"], total["lost"], total["duplicated"],
                          total["failures"]), (5, 377, 3, 5, 2))

    def test_table_is_one_markdown_table(self):
        text = soak.table(soak.aggregate([rec("s3", 1, 0, 100), rec("majority-loss", 2, 1, 9, lost=1)]))
        lines = text.splitlines()
        self.assertEqual(len(lines), 5)  # header, rule, 2 sets, total
        self.assertTrue(all(l.startswith("|") and l.endswith("|") for l in lines))
        self.assertEqual(len({l.count("|") for l in lines}), 1, "every row has the same columns")
        self.assertIn("| `s3` | 1 | 100 | 0 | 0 | 0 | - |", lines)
        self.assertIn("| `majority-loss` | 1 | 9 | 1 | 0 | 1 | 2 (exit 1) |", lines)
        self.assertEqual(lines[-1], "| **all** | 2 | 109 | 1 | 0 | 1 | - |")

    def test_run_record_from_result_json(self):
        r = soak.run_record("kill", 7, 2, dict(acked_events=10, lost=0, duplicated=0, valid=True,
                                               nemesis_ops=[dict(phase="start"), dict(phase="heal")],
                                               anomalies=[dict(kind="b"), dict(kind="a"), dict(kind="b")]),
                            "/w")
        self.assertEqual((r["acked_events"], r["faults"], r["anomalies"], r["completed"]), (10, 1, ["a", "b"], True))
        none = soak.run_record("kill", 8, 2, None, "/w")
        self.assertEqual((none["acked_events"], none["completed"]), (0, False))


class CommandTest(unittest.TestCase):
    def test_bucket_forwarders_and_passthrough(self):
        a = soak.parse_args(["--time", "20", "--forwarders", "2", "--bin", "/b", "--", "--no-tls"])
        cmd = soak.run_command(a, "kill,s3", 5, "/w")
        self.assertEqual(cmd[2:], ["--time", "20.0", "--nemesis", "kill,s3", "--seed", "5", "--workdir", "/w",
                                   "--forwarders", "2", "--bucket", "s3", "--bin", "/b", "--no-tls"])
        self.assertNotIn("--bucket", soak.run_command(a, "kill", 5, "/w"))
        a = soak.parse_args(["--bucket", "s3"])
        self.assertIn("s3", soak.run_command(a, "kill", 1, "/w"))
        self.assertEqual(soak.parse_args([]).sets, list(soak.DEFAULT_SETS))


FAKE_HARNESS = r'''
import json, os, sys
a = sys.argv[1:]
nemeses, seed, workdir = a[a.index("--nemesis") + 1], int(a[a.index("--seed") + 1]), a[a.index("--workdir") + 1]
os.makedirs(workdir)
lost = 4 if seed == 11 else 0
with open(os.path.join(workdir, "result.json"), "w") as f:
    json.dump(dict(acked_events=1000 + seed, lost=lost, duplicated=0, valid=not lost,
                   nemesis_ops=[dict(phase="start")], anomalies=[], argv=a), f)
sys.exit(1 if lost else 0)
'''


class SoakMainTest(unittest.TestCase):
    def test_goes_on_after_a_failure_and_prints_one_table(self):
        with tempfile.TemporaryDirectory() as d:
            harness = os.path.join(d, "fake.py")
            with open(harness, "w") as f:
                f.write(FAKE_HARNESS)
            work = os.path.join(d, "soak")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = soak.main(["--runs", "4", "--time", "1", "--seed", "10", "--set", "a", "--set", "b,s3",
                                  "--workdir", work, "--harness", harness])
            self.assertEqual(code, 1)
            text = out.getvalue()
            self.assertEqual(text.count("| nemesis set |"), 1)
            self.assertIn("| `a` | 2 | 2022 | 0 | 0 | 0 | - |", text)
            self.assertIn("| `b,s3` | 2 | 2024 | 4 | 0 | 1 | 11 (exit 1) |", text)
            with open(os.path.join(work, "soak.json")) as f:
                summary = json.load(f)
            self.assertEqual([r["seed"] for r in summary["runs"]], [10, 11, 12, 13])
            self.assertEqual(summary["table"][-1]["failures"], 1)
            # The passing runs' work dirs are gone, the failing one is kept.
            self.assertEqual(sorted(n for n in os.listdir(work) if not n.endswith((".out", ".json"))), ["run002"])
            self.assertEqual(summary["runs"][1]["workdir"], os.path.join(work, "run002"))


if __name__ == "__main__":
    unittest.main()
