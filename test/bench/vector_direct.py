#!/usr/bin/env python3
"""Direct-HTTP side of test/bench/bench_vector.sh (stdlib only).

  vector_direct.py gen N DIM FILE        write N random vectors (seeded) as CSV
  vector_direct.py upsert COLL FILE B    upsert FILE into collection COLL in
                                         batches of B over one keep-alive
                                         connection; print seconds
  vector_direct.py query COLL QFILE K N  send the same /query N times; print
                                         the mean latency in ms
  vector_direct.py record FILE           a recording proxy to CHROMA_URL: print
                                         its port, then forward every request,
                                         appending "CONNECTION SHA256" of each
                                         /query request's exact bytes (request
                                         line, headers, body) to FILE, and the
                                         bytes to FILE.SHA256
"""

import csv
import hashlib
import http.client
import itertools
import json
import os
import random
import socketserver
import sys
import threading
import time
import urllib.parse

BASE = "/api/v2/tenants/default_tenant/databases/default_database/collections"


def conn():
    u = urllib.parse.urlparse(os.environ["CHROMA_URL"])
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def call(c, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    c.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    payload = r.read()
    if r.status >= 300:
        sys.exit("HTTP %d on %s %s: %s" % (r.status, method, path, payload[:200]))
    return json.loads(payload) if payload else None


def collection_id(c, name, space="l2"):
    return call(c, "POST", BASE, {"name": name, "get_or_create": True,
                                  "configuration": {"hnsw": {"space": space}}})["id"]


def gen(n, dim, path):
    rnd = random.Random(42)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        for i in range(n):
            v = [round(rnd.uniform(-1, 1), 6) for _ in range(dim)]
            w.writerow(["v%05d" % i, "{" + ",".join(map(str, v)) + "}", "doc %d" % i,
                        json.dumps({"grp": "g%d" % (i % 10), "i": i})])


def read(path):
    with open(path, newline="") as f:
        for row in csv.reader(f):
            yield row[0], [float(x) for x in row[1].strip("{}").split(",")], row[2], json.loads(row[3])


def upsert(coll, path, batch):
    c = conn()
    cid = collection_id(c, coll)
    rows = list(read(path))
    start = time.monotonic()
    for i in range(0, len(rows), batch):
        b = rows[i:i + batch]
        call(c, "POST", "%s/%s/upsert" % (BASE, cid),
             {"ids": [r[0] for r in b], "embeddings": [r[1] for r in b],
              "documents": [r[2] for r in b], "metadatas": [r[3] for r in b]})
    print("%.3f" % (time.monotonic() - start))


def query(coll, qpath, k, n):
    c = conn()
    cid = call(c, "GET", "%s/%s" % (BASE, coll))["id"]
    q = [float(x) for x in open(qpath).read().strip().strip("{}").split(",")]
    body = {"query_embeddings": [q], "n_results": k, "include": ["distances"]}
    for _ in range(5):
        call(c, "POST", "%s/%s/query" % (BASE, cid), body)
    start = time.monotonic()
    for _ in range(n):
        call(c, "POST", "%s/%s/query" % (BASE, cid), body)
    print("%.3f" % ((time.monotonic() - start) * 1000.0 / n))


def record(path):
    """Serve as a recording proxy until killed (see the module's usage)."""
    lock = threading.Lock()
    ids = itertools.count(1)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            me = next(ids)
            upstream = conn()
            while True:
                raw = b""
                while not raw.endswith(b"\r\n\r\n"):
                    line = self.rfile.readline()
                    if not line:
                        return
                    raw += line
                head = raw.decode("latin-1").split("\r\n")
                method, target = head[0].split(" ")[:2]
                headers = dict(h.split(": ", 1) for h in head[1:] if h)
                length = int(next((v for k, v in headers.items()
                                   if k.lower() == "content-length"), "0"))
                body = self.rfile.read(length)
                raw += body
                if target.endswith("/query"):
                    digest = hashlib.sha256(raw).hexdigest()
                    with lock:
                        with open(path, "a") as f:
                            f.write("%d %s\n" % (me, digest))
                        with open("%s.%s" % (path, digest), "wb") as f:
                            f.write(raw)
                upstream.request(method, target, body=body or None,
                                 headers={k: v for k, v in headers.items()
                                          if k.lower() not in ("host", "content-length")})
                r = upstream.getresponse()
                payload = r.read()
                self.wfile.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n"
                                 % (r.status, r.reason.encode(), len(payload)) + payload)
                self.wfile.flush()

    socketserver.ThreadingTCPServer.daemon_threads = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif cmd == "upsert":
        upsert(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "query":
        query(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "record":
        record(sys.argv[2])
    else:
        sys.exit(__doc__)
