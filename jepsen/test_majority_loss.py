"""Tests of the checker's majority-loss rule (jepsen/lograft_jepsen.py), without lograft: the
windows read from the nemesis records, acks inside a window (after the grace) caught, acks
before, within the grace and after `restore` allowed, an interrupted window open to the end,
forwarder runs not checked, and the verdict failing on such an ack.

    python3 -m unittest jepsen/test_majority_loss.py      # from the repo root
"""

import gzip
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lograft_jepsen as lj  # noqa: E402


def op(kind, phase, t):
    return dict(kind=kind, phase=phase, t=t)


OPS = [op("kill", "start", 1), op("kill", "heal", 2),
       op("majority-loss", "start", 10), op("majority-loss", "during", 12),
       op("majority-loss", "restore", 14), op("majority-loss", "heal", 15),
       op("majority-loss", "start", 20), op("majority-loss", "restore", 22)]


def chunk(n, t, outcome="ok", first=None):
    return dict(chunk="c%d" % n, first=n * 10 if first is None else first, count=10, outcome=outcome,
                t_invoke=0, node=1, t_complete=t, attempts=[])


class MajorityLossTest(unittest.TestCase):
    def test_windows(self):
        self.assertEqual(lj.majority_loss_windows(OPS), [(10, 14), (20, 22)])
        self.assertEqual(lj.majority_loss_windows(OPS + [op("majority-loss", "start", 30)]),
                         [(10, 14), (20, 22), (30, None)])
        self.assertEqual(lj.majority_loss_windows(OPS[:2]), [])

    def test_acks_inside_a_window_after_the_grace_are_caught(self):
        history = [chunk(0, 9.9), chunk(1, 10.4),  # before, and within the 0.5 s grace
                   chunk(2, 11.0), chunk(3, 13.9),  # inside the first window
                   chunk(4, 14.1), chunk(5, 21.0, outcome="unknown"),  # after restore; not acked
                   chunk(6, 21.5)]  # inside the second
        w = lj.acks_while_majority_lost(OPS, history, 0.5)
        self.assertEqual([x["acked_chunks"] for x in w], [2, 1])
        self.assertEqual([s["chunk"] for s in w[0]["sample"]], ["c2", "c3"])
        open_ = lj.acks_while_majority_lost([op("majority-loss", "start", 10)], history, 0.5)
        self.assertEqual(open_[0]["acked_chunks"], 4)  # 11.0, 13.9, 14.1, 21.5

    def test_check_and_verdict(self):
        with tempfile.TemporaryDirectory() as bucket:
            os.makedirs(os.path.join(bucket, "test.jepsen"))
            history = [chunk(0, 5.0), chunk(1, 12.0)]
            with gzip.open(os.path.join(bucket, "test.jepsen", "1-2.log.gz"), "wb") as f:
                for seq in range(20):
                    f.write(b"t\ttest.jepsen\t" + json.dumps(dict(seq=seq)).encode() + b"\n")
            res = lj.check(bucket, history, 10, None, OPS, False, 0.5)
            self.assertEqual((res["lost"], res["duplicated"]), (0, 0))
            self.assertEqual(res["majority_loss"]["acked_while_lost"], 1)
            self.assertFalse(lj.verdict(res, False))
            # Forwarders ack what they stored: not checked, and not failed.
            res = lj.check(bucket, history, 10, None, OPS, True, 0.5)
            self.assertFalse(res["majority_loss"]["checked"])
            self.assertTrue(lj.verdict(res, False))
            # Without majority-loss faults the result has no such section.
            self.assertNotIn("majority_loss", lj.check(bucket, history, 10, None, OPS[:2], False, 0.5))


if __name__ == "__main__":
    unittest.main()
