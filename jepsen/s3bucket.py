"""jepsen/s3bucket.py: the bucket of `--bucket s3`: moto's S3 server on loopback, the fault
proxy (jepsen/s3proxy.py) the cluster uploads through, and reading the bucket back through the
S3 API for the checker.

Owns moto's process (started with `--s3-python`, a Python that has `moto[server]` and boto3,
e.g. the test venv `target/test-venv` that .ci/run makes), the bucket's name, key prefix and
credentials, and the `<match>` text that points the cluster at the proxy. The harness itself
stays stdlib only: whatever needs boto3 runs as `S3_PYTHON jepsen/s3bucket.py create|download`.
`download` lists the bucket with list_objects_v2 (every page) and fetches each object with
get_object into a snapshot directory (keys under the prefix, so `dead-letter/...` and
`<tag>/YYYY/MM/DD/...` as in a local bucket); the checker reads that snapshot, and `--recheck`
can read it again after moto is gone. It must not check anything (the checker does) nor inject
faults (the proxy does).
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import s3proxy  # jepsen/s3proxy.py

BUCKET = "jepsen"
PREFIX = "lograft"
REGION = "us-east-1"
KEY_ID = "lograft-jepsen"
SECRET = "jepsen-secret"


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def match_text(endpoint, buffer):
    """The cluster's `<match test.**>`: out_s3 to `endpoint` (the proxy), with the harness's
    `<buffer>` section."""
    return """<match test.**>
  @type s3
  s3_bucket %(bucket)s
  s3_region %(region)s
  s3_endpoint %(endpoint)s
  aws_key_id %(key)s
  aws_sec_key %(secret)s
  force_path_style true
  path %(prefix)s
%(buffer)s</match>
""" % dict(bucket=BUCKET, region=REGION, endpoint=endpoint, key=KEY_ID, secret=SECRET,
           prefix=PREFIX, buffer=buffer)


class S3Bucket:
    """moto on 127.0.0.1 (a free port) with the bucket created, and the fault proxy before it."""

    def __init__(self, python, log_path, seed=None, slow_delay=(0.5, 4.0)):
        self.python = python
        self.log_path = log_path
        self.seed = seed
        self.slow_delay = slow_delay
        self.proc = None
        self.port = None
        self.proxy = None

    @property
    def endpoint(self):
        """Where the cluster uploads: the proxy."""
        return "http://127.0.0.1:%d" % self.proxy.port

    @property
    def moto_endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        self.port = free_port()
        with open(self.log_path, "ab") as lf:
            self.proc = subprocess.Popen(
                [self.python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("moto server exited (%s); see %s" % (self.proc.returncode, self.log_path))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto server did not listen on 127.0.0.1:%d" % self.port)
                time.sleep(0.2)
        self._helper("create")
        self.proxy = s3proxy.FaultProxy(("127.0.0.1", self.port), seed=self.seed,
                                        slow_delay=self.slow_delay).start()
        return self

    def _helper(self, *args, timeout=600):
        r = subprocess.run([self.python, os.path.abspath(__file__), self.moto_endpoint] + list(args),
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("s3bucket.py %s: %s" % (args[0], r.stderr.strip()[-2000:]))
        return r.stdout

    def download(self, dest):
        """Snapshot the bucket into `dest` through the S3 API; the helper's summary (dict)."""
        return json.loads(self._helper("download", dest))

    def stop(self):
        if self.proxy:
            self.proxy.stop()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def local_name(rel):
    """A key below the prefix as a relative file path: no empty, `.` or `..` segment, none
    longer than a file name may be (such a segment is replaced, keeping its suffix)."""
    parts = []
    for seg in rel.split("/"):
        if seg in ("", ".", ".."):
            seg = "%" + seg.encode().hex()
        if len(seg.encode()) > 240:
            seg = "%long-" + hashlib.sha256(seg.encode()).hexdigest()[:16] + (
                ".log.gz" if seg.endswith(".log.gz") else ".log" if seg.endswith(".log") else "")
        parts.append(seg)
    return os.path.join(*parts)


def _client(endpoint):
    import boto3  # only in the S3 python (moto[server] brings it)
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)


def _download(endpoint, dest):
    s3 = _client(endpoint)
    os.makedirs(dest, exist_ok=True)
    objects, size, keys, other = 0, 0, [], []
    token = None
    while True:
        kw = dict(Bucket=BUCKET)
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        for o in page.get("Contents", []):
            key = o["Key"]
            if not key.startswith(PREFIX + "/"):
                other.append(key)
                continue
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            if len(body) != o["Size"]:
                raise RuntimeError("%s: listed %d bytes, got %d" % (key, o["Size"], len(body)))
            path = os.path.join(dest, local_name(key[len(PREFIX) + 1:]))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(body)
            objects += 1
            size += len(body)
            if len(keys) < 5:
                keys.append(key)
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]
    return dict(objects=objects, bytes=size, sample_keys=keys, outside_prefix=other[:20])


def main(argv):
    endpoint, cmd = argv[0], argv[1]
    if cmd == "create":
        _client(endpoint).create_bucket(Bucket=BUCKET)
    elif cmd == "download":
        print(json.dumps(_download(endpoint, argv[2])))
    else:
        raise SystemExit("usage: s3bucket.py ENDPOINT create | download DEST")


if __name__ == "__main__":
    main(sys.argv[1:])
