#!/usr/bin/env python3
"""Direct-HTTP side of test/bench/bench_vector.sh (stdlib only).

  vector_direct.py gen N DIM FILE        write N random vectors (seeded) as CSV
  vector_direct.py upsert COLL FILE B    upsert FILE into collection COLL in
                                         batches of B over one keep-alive
                                         connection; print seconds
  vector_direct.py query COLL QFILE K N  send the same /query N times; print
                                         the mean latency in ms
"""

import csv
import http.client
import json
import os
import random
import sys
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


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif cmd == "upsert":
        upsert(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "query":
        query(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
