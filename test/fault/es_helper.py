"""Helpers of the pgpoly_elastic fault tests: a private ES stand-in.

Fault tests never use the shared cluster (ES_URL, maybe a real one): each
starts its own test/es_standin.py, whose /_standin/faults endpoint injects
429/5xx answers, delays, truncated and garbage bodies.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pgtest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Standin:
    """A test/es_standin.py process on a free port (stopped at exit)."""

    def __init__(self, *args):
        self.port = pgtest.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        log = open(os.path.join(pgtest.work_dir(),
                                "es_standin_%d.log" % self.port), "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "es_standin.py"),
             "--port", str(self.port)] + list(args),
            stdout=log, stderr=subprocess.STDOUT)
        pgtest.register_pid(self.proc.pid, "es-standin-fault")
        ok = pgtest.wait_for(self._up, timeout=10, interval=0.05)
        if not ok:
            raise RuntimeError("es_standin.py did not start")

    def _up(self):
        try:
            self.request("GET", "/_standin/stats")
            return True
        except OSError:
            return False

    def request(self, method, path, body=None, ndjson=False, headers=None):
        """Send a request directly; return the parsed JSON response."""
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs["Content-Type"] = ("application/x-ndjson" if ndjson
                                    else "application/json")
        req = urllib.request.Request(self.url + path, data=data,
                                     method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"null")

    def faults(self, *faults):
        self.request("POST", "/_standin/faults", {"faults": list(faults)})

    def clear(self):
        self.request("DELETE", "/_standin/faults")

    def stats(self):
        return self.request("GET", "/_standin/stats")

    def load(self, index, n, mappings=None):
        """Create index with n documents {"n": i, "grp": "g<i%3>"} via _bulk."""
        self.request("PUT", "/" + index, {"mappings": mappings or {
            "properties": {"n": {"type": "long"}, "grp": {"type": "keyword"}}}})
        for start in range(0, n, 5000):
            lines = []
            for i in range(start, min(n, start + 5000)):
                lines.append(json.dumps({"index": {"_id": "d%d" % i}}))
                lines.append(json.dumps({"n": i, "grp": "g%d" % (i % 3)}))
            self.request("POST", "/%s/_bulk" % index,
                         ("\n".join(lines) + "\n").encode(), ndjson=True)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
