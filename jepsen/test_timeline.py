"""Tests of jepsen/timeline.py (the run's SVG timeline) and of the harness's LeaderWatch, on
small synthetic runs: the SVG must parse as XML and hold one band per fault window, the
acks/latency series with their gaps, one mark per second with failed or unknown chunks, the
anomalies and one leader segment per recorded change.

    python3 -m unittest jepsen/test_timeline.py      # from the repo root
"""

import os
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lograft_jepsen  # noqa: E402
import timeline  # noqa: E402

NS = "{http://www.w3.org/2000/svg}"


def chunk(t_invoke, t_complete, outcome="ok", count=50):
    return dict(chunk="c", first=0, count=count, outcome=outcome, client=0, node=1, slot=1,
                t_invoke=t_invoke, t_complete=t_complete, attempts=[])


def op(kind, phase, t, **kw):
    return dict(kw, kind=kind, phase=phase, t=t)


OPS = [
    op("kill", "start", 5.0, slot=1, node_id=1, target="leader", leader_slot=1),
    op("kill", "during", 7.5, views={"1": None, "2": "node 2 Leader term 2 leader 2",
                                     "3": "node 3 Follower term 2 leader 2"}),
    op("kill", "heal", 8.0, slot=1, node_id=1, restarted=True),
    op("pause", "start", 10.0, slot=101, node_id="f1", target="forwarder"),
    op("pause", "heal", 13.0, slot=101, node_id="f1"),
    op("disk-loss", "skipped", 14.0, reason="no leader"),
    op("disk-loss", "start", 15.0, slot=3, node_id=3, leader_slot=2),
    op("disk-loss", "during", 16.0, views={"1": "node 1 Follower term 2 leader 2",
                                           "2": "node 2 Leader term 2 leader 2", "3": None}),
    op("disk-loss", "old-id-refused", 16.5, slot=3, old_id=3),
    op("disk-loss", "joined", 17.0, slot=3, new_id=4),
    op("disk-loss", "replaced", 20.0, slot=3, old_id=3, new_id=4, rc=0),
    # never healed: the run was interrupted
    op("partition", "start", 22.0, slot=2, node_id=2, target="leader", groups=[[2], [1, 3]]),
]

LEADER_WATCH = dict(interval=1.0, until=24.5, changes=[
    dict(t=1.0, slot=1, node_id=1, term=1),
    dict(t=5.2, slot=None, node_id=None, term=None),
    dict(t=6.0, slot=2, node_id=2, term=2),
    dict(t=23.0, slot=1, node_id=1, term=3),
])


def history():
    h = []
    for s in range(1, 25):
        if 10 <= s < 13:
            continue  # no ack while the forwarder is paused
        h.append(chunk(s + 0.1, s + 0.12))  # 20 ms
        h.append(chunk(s + 0.2, s + 0.25))  # 50 ms
        h.append(chunk(s + 0.3, s + 0.5))  # 200 ms
    h.append(chunk(9.9, 13.4))  # 3.5 s: waited through the pause
    h += [chunk(8.0, 11.5, "unknown"), chunk(8.1, 11.6, "unknown"), chunk(9.0, 12.2, "fail")]
    return h


RESULT = dict(workdir="/tmp/lograft-jepsen/run <&> \"x\"\x01", seed=7, acked_chunks=67,
              acked_events=3350, lost=0, duplicated=0, unknown_chunks=2, valid=True,
              exit_code=0, nemesis_ops=OPS, leader_watch=LEADER_WATCH,
              anomalies=[dict(kind="node-exited", t=18.0, slot=2, log_tail="x" * 5000,
                              detail="<panic & co>")])


def parse(svg_text):
    return ET.fromstring(svg_text)


def with_class(root, tag, cls):
    """Elements `tag` whose class list has `cls`."""
    return [e for e in root.iter(NS + tag) if cls in (e.get("class") or "").split()]


class TimelineTest(unittest.TestCase):
    def setUp(self):
        self.root = parse(timeline.render(RESULT, history()))

    def test_one_band_per_fault_window(self):
        bands = with_class(self.root, "rect", "fault")
        self.assertEqual(len(bands), 4)  # the skipped disk-loss is no window
        kinds = [b.get("class").split()[1] for b in bands]
        self.assertEqual(kinds, ["fault-kill", "fault-pause", "fault-disk-loss", "fault-partition"])
        xs = [float(b.get("x")) for b in bands]
        self.assertEqual(xs, sorted(xs))
        widths = [float(b.get("width")) for b in bands]
        # kill 3 s, pause 3 s, disk-loss 5 s (start to replaced): widths in that ratio
        self.assertAlmostEqual(widths[0], widths[1], delta=0.2)
        self.assertAlmostEqual(widths[2] / widths[0], 5 / 3.0, delta=0.02)
        # the partition was never healed: its band runs to the right edge, dashed end line
        self.assertAlmostEqual(xs[3] + widths[3], timeline.RIGHT, delta=0.2)
        labels = [t.text for t in with_class(self.root, "text", "fault-label")]
        self.assertEqual(labels, ["kill n1*", "pause f1", "disk-loss n3", "partition n2*"])
        tips = [b.find(NS + "title").text for b in bands]
        self.assertIn("old-id-refused 16.50", tips[2])
        self.assertIn("NOT HEALED", tips[3])

    def test_series_and_gaps(self):
        self.assertEqual(len(with_class(self.root, "path", "acks")), 1)
        for name in ("lat-p50", "lat-p99"):
            paths = with_class(self.root, "path", name)
            self.assertEqual(len(paths), 1)
            # seconds 1-9 and 13-24 have acks, 10-12 none: two strokes
            self.assertEqual(paths[0].get("d").count("M"), 2, name)

    def test_outcome_marks_and_anomalies(self):
        self.assertEqual(len(with_class(self.root, "path", "mark-unknown")), 1)  # both in second 11
        self.assertEqual(len(with_class(self.root, "path", "mark-fail")), 1)
        texts = [t.text for t in self.root.iter(NS + "text")]
        self.assertIn("2", texts)  # the count next to the unknown mark
        anomalies = with_class(self.root, "path", "anomaly")
        self.assertEqual(len(anomalies), 1)
        tip = anomalies[0].find(NS + "title").text
        self.assertIn("<panic & co>", tip)  # escaped in the file, intact once parsed
        self.assertNotIn("xxxxx", tip)  # no log tail in the tooltip

    def test_leader_lane_from_watch(self):
        segs = with_class(self.root, "rect", "leader")
        self.assertEqual(len(segs), len(LEADER_WATCH["changes"]))
        self.assertEqual(len(with_class(self.root, "rect", "leader-none")), 1)
        self.assertEqual(len(with_class(self.root, "line", "leader-change")), 3)
        self.assertEqual(with_class(self.root, "circle", "leader-seen"), [])
        last = segs[-1]  # n1 from 23.0 to the end of the poll (24.5)
        self.assertIn("leader n1 (term 3) 23.00-24.50", last.find(NS + "title").text)

    def test_leader_fallback_without_watch(self):
        r = dict(RESULT)
        del r["leader_watch"]
        root = parse(timeline.render(r, history()))
        seen = with_class(root, "circle", "leader-seen")
        self.assertEqual(len(seen), 2)  # the two "during" views
        self.assertEqual(with_class(root, "rect", "leader"), [])

    def test_title_escaped(self):
        title = next(self.root.iter(NS + "text")).text
        self.assertEqual(title, 'lograft jepsen run run <&> "x"')

    def test_empty_run_still_draws(self):
        root = parse(timeline.render(dict(interrupted=True), []))
        self.assertEqual(with_class(root, "rect", "fault"), [])
        self.assertEqual(root.get("width"), "1200")

    def test_write_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = timeline.write(os.path.join(d, "timeline.svg"), RESULT, history())
            self.assertEqual(len(with_class(ET.parse(path).getroot(), "rect", "fault")), 4)
            self.assertEqual(os.listdir(d), ["timeline.svg"])


class DataTest(unittest.TestCase):
    def test_fault_windows(self):
        w = timeline.fault_windows(OPS, 30.0)
        self.assertEqual([(x["kind"], x["t0"], x["t1"], x["open"]) for x in w], [
            ("kill", 5.0, 8.0, False), ("pause", 10.0, 13.0, False),
            ("disk-loss", 15.0, 20.0, False), ("partition", 22.0, 30.0, True)])

    def test_overlapping_faults(self):
        ops = [op("disk-loss", "start", 1.0, slot=3, node_id=3),
               op("kill", "start", 2.0, slot=1, node_id=1),
               op("disk-loss", "joined", 3.0, slot=3, new_id=4),
               op("kill", "during", 3.5, views={}),
               op("kill", "heal", 4.0, slot=1),
               op("disk-loss", "replaced", 6.0, slot=3)]
        w = timeline.fault_windows(ops, 10.0)
        self.assertEqual([(x["kind"], x["t0"], x["t1"], x["open"]) for x in w], [
            ("disk-loss", 1.0, 6.0, False), ("kill", 2.0, 4.0, False)])
        self.assertEqual(w[1]["steps"], [("start", 2.0), ("during", 3.5), ("heal", 4.0)])

    def test_per_second(self):
        acks, lat, failed, unknown = timeline.per_second(history())
        self.assertEqual(acks[1], 150)
        self.assertEqual(acks[13], 200)  # three chunks of second 13 plus the one from 9.9
        self.assertNotIn(11, acks)
        self.assertEqual(unknown, {11: 2})
        self.assertEqual(failed, {12: 1})
        self.assertAlmostEqual(timeline.percentile(lat[1], 50), 0.05, places=6)
        self.assertAlmostEqual(timeline.percentile(lat[13], 99), 3.5, places=6)


class FakeSlot:
    def __init__(self, node_id):
        self.node_id = node_id


class FakeCluster:
    """Answers `statuses()` from a script, then stops the watch (LeaderWatch reads only
    `slots` and `statuses()`)."""

    def __init__(self, script):
        self.slots = {1: FakeSlot(1), 2: FakeSlot(2), 3: FakeSlot(3)}
        self.script = list(script)
        self.watch = None

    def statuses(self):
        st = self.script.pop(0)
        if not self.script:
            self.watch.stop_event.set()
        return st


def status(node, state, term):
    return dict(node_id=node, state=state, term=term, leader_id=None)


class LeaderWatchTest(unittest.TestCase):
    def test_records_changes_only(self):
        lead1 = {1: status(1, "Leader", 1), 2: status(2, "Follower", 1), 3: status(3, "Follower", 1)}
        none = {1: None, 2: status(2, "Candidate", 2), 3: status(3, "Follower", 1)}
        # node 1 isolated, still saying it leads in term 1; node 2 leads in term 2: 2 wins
        split = {1: status(1, "Leader", 1), 2: status(2, "Leader", 2), 3: status(3, "Follower", 2)}
        stale = {1: status(9, "Leader", 5), 2: status(2, "Leader", 2), 3: None}  # not slot 1's node
        script = [lead1, lead1, none, none, split, split, stale, lead1, lead1, lead1]
        c = FakeCluster(script)
        w = lograft_jepsen.LeaderWatch(c, 0.001)
        c.watch = w
        w.run()
        got = [(x["slot"], x["node_id"], x["term"]) for x in w.changes]
        self.assertEqual(got, [(1, 1, 1), (None, None, None), (2, 2, 2), (1, 1, 1)])
        rec = w.record()
        self.assertEqual(rec["interval"], 0.001)
        self.assertIsNotNone(rec["until"])

    def test_off(self):
        w = lograft_jepsen.LeaderWatch(FakeCluster([]), 0)
        w.start()
        self.assertIsNone(w.thread)
        w.stop()
        self.assertEqual(w.record()["changes"], [])


if __name__ == "__main__":
    unittest.main()
