"""Tests of `--bucket s3`'s bucket (jepsen/s3bucket.py) against moto's real S3 server on
127.0.0.1, without lograft: objects PUT through the fault proxy (signed by boto3 without
retries, as one attempt of an uploader) land in the bucket or not as each fault mode says; the
harness checker, reading the bucket back through the S3 API (boto3 list_objects_v2 +
get_object, in the S3 Python), finds every event once, reports an object missing from the
bucket as lost and a copy in the dead-letter area as duplicated; the listing is paged through.

Needs a Python with moto[server] and boto3: $LOGRAFT_S3_PYTHON, else target/test-venv/bin/python
(.ci/run makes it before running these tests); skipped without one.

    python3 -m unittest jepsen/test_s3bucket.py      # from the repo root
"""

import gzip
import json
import os
import subprocess
import sys
import tempfile
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import lograft_jepsen as lj  # noqa: E402
import s3bucket  # noqa: E402

PYTHON = os.environ.get("LOGRAFT_S3_PYTHON",
                        os.path.join(os.path.dirname(HERE), "target", "test-venv", "bin", "python"))


PUT = r"""
import sys, boto3, botocore.config
endpoint, bucket, key, path, key_id, secret = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key_id,
                  aws_secret_access_key=secret,
                  config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"},
                                                read_timeout=20))
try:
    s3.put_object(Bucket=bucket, Key=key, Body=open(path, "rb").read())
    print(200)
except botocore.exceptions.ClientError as e:
    print(e.response["ResponseMetadata"]["HTTPStatusCode"])
except Exception as e:
    print(type(e).__name__)
"""


def body(first, count):
    lines = b"".join(b"2026-11-27T07:00:00+00:00\ttest.jepsen\t" + json.dumps(dict(seq=s)).encode() + b"\n"
                     for s in range(first, first + count))
    return gzip.compress(lines)


def history(n_chunks, count=10):
    return [dict(chunk="c%d" % i, first=i * count, count=count, outcome="ok", node=1, t_invoke=0.5,
                 t_complete=1.0, attempts=[]) for i in range(n_chunks)]


@unittest.skipUnless(os.access(PYTHON, os.X_OK), "no S3 python at %s" % PYTHON)
class S3BucketTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.bucket = s3bucket.S3Bucket(PYTHON, os.path.join(self.tmp.name, "moto.log"), seed=3).start()
        self.addCleanup(self.bucket.stop)

    def put(self, key, data):
        """A signed PUT through the proxy (boto3 in the S3 Python, no retries, as an uploader's
        single attempt); the HTTP status, or the error's name."""
        path = os.path.join(self.tmp.name, "body")
        with open(path, "wb") as f:
            f.write(data)
        r = subprocess.run([PYTHON, "-c", PUT, self.bucket.endpoint, s3bucket.BUCKET,
                            "%s/%s" % (s3bucket.PREFIX, key), path, s3bucket.KEY_ID, s3bucket.SECRET],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.strip()
        return int(out) if out.isdigit() else out

    def put_unsigned(self, key, data):
        """A plain PUT of a new key through the proxy (moto takes it unsigned): the status."""
        url = "%s/%s/%s/%s" % (self.bucket.endpoint, s3bucket.BUCKET, s3bucket.PREFIX, key)
        req = urllib.request.Request(url, data=data, method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status

    def snapshot(self, name):
        dest = os.path.join(self.tmp.name, name)
        return self.bucket.download(dest), dest

    def test_fault_modes_against_moto_and_the_checker_reading_back(self):
        proxy = self.bucket.proxy
        self.assertEqual(self.put("test.jepsen/2026/11/27/0-0.log.gz", body(0, 10)), 200)
        proxy.set_fault("5xx")
        self.assertIn(self.put("test.jepsen/2026/11/27/1-1.log.gz", body(10, 10)), (500, 503))
        proxy.set_fault("5xx-after")
        self.assertIn(self.put("test.jepsen/2026/11/27/2-2.log.gz", body(20, 10)), (500, 503))
        proxy.set_fault("reset")
        self.assertEqual(self.put("test.jepsen/2026/11/27/3-3.log.gz", body(30, 10)), "ConnectionClosedError")
        proxy.set_fault("4xx")
        self.assertEqual(self.put("test.jepsen/2026/11/27/4-4.log.gz", body(40, 10)), 400)
        proxy.clear()
        self.assertEqual(self.put("dead-letter/5-5.log.gz", body(50, 10)), 200)

        summary, snap = self.snapshot("snap1")
        self.assertEqual(summary["objects"], 3)  # 0 (passed), 2 (stored before the 5xx), 5
        res = lj.check(snap, history(6), 10)
        self.assertEqual((res["acked_events"], res["lost"], res["duplicated"]), (60, 30, 0))
        self.assertEqual(res["events_in_dead_letter"], 10)

        # The retries a real uploader would make: every batch stored, one of them twice over
        # (an overwrite: the same key), then a copy planted in the dead-letter area.
        for i in (1, 2, 2, 3, 4):
            self.assertEqual(self.put("test.jepsen/2026/11/27/%d-%d.log.gz" % (i, i), body(i * 10, 10)), 200)
        summary, snap = self.snapshot("snap2")
        res = lj.check(snap, history(6), 10)
        self.assertEqual((summary["objects"], res["lost"], res["duplicated"]), (6, 0, 0))
        self.assertTrue(lj.verdict(res, False))
        self.assertEqual(self.put("dead-letter/copy.log.gz", body(20, 10)), 200)
        _, snap = self.snapshot("snap3")
        res = lj.check(snap, history(6), 10)
        self.assertEqual(res["duplicated"], 10)
        self.assertFalse(lj.verdict(res, False))

    def test_download_pages_through_the_listing(self):
        for i in range(1005):  # list_objects_v2 answers at most 1000 keys a page
            self.assertEqual(self.put_unsigned("k/%04d" % i, b"x"), 200)
        summary, snap = self.snapshot("many")
        self.assertEqual(summary["objects"], 1005)
        self.assertEqual(len(os.listdir(os.path.join(snap, "k"))), 1005)


if __name__ == "__main__":
    unittest.main()
