#!/usr/bin/env python3
"""Write the seed corpora of the JSON fuzz harnesses from real responses.

  python3 test/fuzz/seeds.py [--chroma-url URL]

The responses are the services' own, to the requests pgpoly sends:
  elastic  test/es_standin.py (started here, Elasticsearch and OpenSearch
           flavours) with an index holding documents of every column type;
  qdrant   test/qdrant_fixture.py (in process) with a collection of points;
  chroma   a real Chroma 1.0 server (the one test/lib_chroma.sh starts;
           --chroma-url), skipped without one: the committed seeds stay.
Each seed is an input of the harness (see test/fuzz/harness.c and the
harness files): two bytes choosing the flow and its options, then the
script, one segment per reply separated by "|#|", each segment a control
byte (0x00: 200 with the raw body; 0x40: 200 with a structured body whose
pieces are the records, one per line) and the body.  Files are named by
the SHA-1 of their content, as libFuzzer names its corpus.
"""

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "test"))

SEP = b"|#|"
RAW = 0x00
STRUCT = 0x40


def seg(body, ctrl=RAW, status=None):
    """A segment: control byte (status index) and body bytes."""
    statuses = {200: 0, 201: 10, 400: 11, 404: 12, 409: 13, 500: 14, 503: 15}
    if status is not None:
        ctrl = (ctrl & 0xF0) | statuses[status]
    if not isinstance(body, bytes):
        body = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        body = body.encode()
    return bytes([ctrl]) + body


def structured(records, ctrl=STRUCT):
    """A structured segment: one compact JSON record per line."""
    return seg("\n".join(json.dumps(r, separators=(",", ":")) for r in records), ctrl)


def write(harness, b0, b1, segments):
    """Write one seed of harness; returns its path."""
    data = bytes([b0, b1]) + SEP.join(segments)
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, hashlib.sha1(data).hexdigest())
    with open(path, "wb") as f:
        f.write(data)
    return path


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(base, method, path, body=None, ctype="application/json"):
    """(status, body bytes) of one request."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --------------------------------------------------------------------------
# Elasticsearch
# --------------------------------------------------------------------------

DOCS = [
    {"t": "alpha beta", "i": 1, "b": 9007199254740993, "f": 1.5, "n": "12345678901234567890.5",
     "ok": True, "ts": "2024-03-01T12:00:00Z", "d": "2024-03-01", "tags": ["x", "y"],
     "meta": {"k": [1, {"z": None}]}, "a": {"b": "nested"}},
    {"t": "gamma", "i": -2147483648, "b": -1, "f": 1e-300, "n": 0.1, "ok": False,
     "ts": 1709294400000, "d": 1709294400000, "tags": [], "meta": "s", "a": {"b": 7}},
    {"t": "uni\u00e9\u4e2d\U0001F600 \"q\" \\", "i": 2147483647, "b": 9223372036854775807,
     "f": -0.0, "n": -3, "ok": "true", "ts": "2024-03-01T12:00:00.123+02:00",
     "d": "1970-01-01", "tags": ["a,b", "{c}", None], "meta": None, "a.b": "dotted"},
    {"t": None, "i": "12", "f": "NaN", "tags": [["n1", "n2"], ["n3", "n4"]], "a": {"b": None}},
    {},
]

NUL_HIT = {"_index": "fz", "_id": "nul", "_score": 1.0,
           "_source": {"t": "nul \u0000 inside", "i": 3, "meta": {"k": "\u0000"}}}


def es_flavour(args):
    """Start the stand-in; returns (process, base URL)."""
    port = free_port()
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "test", "es_standin.py"),
                          "--port", str(port)] + args,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = "http://127.0.0.1:%d" % port
    for _ in range(100):
        try:
            call(base, "GET", "/")
            return p, base
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise SystemExit("es_standin.py did not start")


def es_fill(base):
    """The index fz (mapped) and other, with DOCS."""
    call(base, "PUT", "/fz", {"mappings": {"properties": {
        "t": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
        "i": {"type": "integer"}, "b": {"type": "long"}, "f": {"type": "double"},
        "n": {"type": "scaled_float", "scaling_factor": 100}, "ok": {"type": "boolean"},
        "ts": {"type": "date"}, "d": {"type": "date"}, "tags": {"type": "keyword"},
        "meta": {"type": "object", "enabled": False},
        "a": {"properties": {"b": {"type": "keyword"}}}}}})
    call(base, "PUT", "/fz-2", {"mappings": {"properties": {
        "title": {"type": "match_only_text"}, "_weird": {"type": "long"},
        "Mixed Case \"q\"": {"type": "unsigned_long"}, "geo": {"type": "geo_point"},
        "when": {"type": "date_nanos"}, "obj": {"properties": {"x": {"type": "short"}}}}}})
    lines = []
    for n, d in enumerate(DOCS):
        lines.append(json.dumps({"index": {"_index": "fz", "_id": str(n + 1)}}))
        lines.append(json.dumps(d))
    call(base, "POST", "/_bulk?refresh=true", ("\n".join(lines) + "\n").encode(),
         "application/x-ndjson")
    call(base, "PUT", "/other", {"mappings": {"properties": {"t": {"type": "keyword"}}}})
    lines = [json.dumps({"index": {"_index": "other", "_id": "o1"}}),
             json.dumps({"t": "short", "v": 1234.567, "ts": "2024-03-01T12:00:00"}),
             json.dumps({"delete": {"_index": "other", "_id": "o2"}})]
    status, body = call(base, "POST", "/_bulk?refresh=true", ("\n".join(lines) + "\n").encode(),
                        "application/x-ndjson")
    return body


def es_seeds():
    n = 0
    for flavour, clusters in ((["--version", "8.11.1"], (0,)),
                              (["--distribution", "opensearch", "--version", "2.11.0"], (2,)),
                              (["--version", "7.10.2"], (1,))):
        p, base = es_flavour(flavour)
        try:
            bulk_ok = es_fill(base)
            n += es_flavour_seeds(base, clusters[0], bulk_ok)
        finally:
            p.kill()
            p.wait()
    return n


def es_search(base, path, body):
    return call(base, "POST", path, body)[1]


def es_flavour_seeds(base, cluster, bulk_ok):
    """Seeds of every flow against one flavour of the stand-in."""
    out = []
    src = {"_source": True, "track_total_hits": True}
    _, root = call(base, "GET", "/")
    page = lambda size, extra=None: es_search(base, "/fz/_search", dict(src, size=size, **(extra or {})))
    first = page(2)
    single = page(3)
    all_hits = json.loads(page(10))["hits"]["hits"]
    # deep paging: a full first page, then PIT + search_after or scroll
    deep = [seg(first)]
    if cluster == 1:
        st, sc = call(base, "POST", "/fz/_search?scroll=1m", dict(src, size=2, sort=["_doc"]))
        deep.append(seg(sc))
        sid = json.loads(sc)["_scroll_id"]
        for _ in range(3):
            st, sc = call(base, "POST", "/_search/scroll", {"scroll": "1m", "scroll_id": sid})
            deep.append(seg(sc))
    else:
        if cluster == 2:
            st, pit = call(base, "POST", "/fz/_search/point_in_time?keep_alive=1m")
            pid = json.loads(pit)["pit_id"]
            tb = "_id"
        else:
            st, pit = call(base, "POST", "/fz/_pit?keep_alive=1m")
            pid = json.loads(pit)["id"]
            tb = "_shard_doc"
        deep.append(seg(pit))
        after = None
        for _ in range(3):
            body = dict(src, size=2, sort=[{tb: "asc"}], pit={"id": pid, "keep_alive": "1m"})
            if after:
                body["search_after"] = after
            pg = json.loads(es_search(base, "/_search", body))
            deep.append(seg(pg))
            if pg["hits"]["hits"]:
                after = pg["hits"]["hits"][-1]["sort"]
    root_seg = seg(root)
    for b1 in (0x00, 0x02, 0x08):
        out.append((0, cluster, b1, deep))
    out.append((0, 5, 0x00, [root_seg] + deep))     # GET / from the script
    out.append((0, cluster, 0x01, [seg(single)]))   # LIMIT: one request
    out.append((0, cluster, 0x03, [seg(single)]))
    # structured: hits, one per line
    out.append((1, cluster, 0x01, [structured(all_hits[:3])]))
    out.append((1, cluster, 0x00, [structured(all_hits[:2]), structured(all_hits[:2]),
                                   structured(all_hits[2:4]), structured(all_hits[4:5])]))
    out.append((1, cluster, 0x0A, [structured(all_hits[3:6])]))
    out.append((1, cluster, 0x00, [structured(all_hits[:1] + [NUL_HIT])]))
    # index pattern
    out.append((2, cluster, 0x01, [seg(es_search(base, "/fz*,other/_search", dict(src, size=3)))]))
    # count
    out.append((3, cluster, 0, [seg(call(base, "POST", "/fz/_count", {"query": {"match_all": {}}})[1])]))
    out.append((3, cluster, 0, [seg("12", STRUCT)]))
    # bulk: "errors": false, then one with failed items (create of an existing id)
    lines = [json.dumps({"create": {"_index": "fz", "_id": "1"}}), json.dumps({"t": "x"}),
             json.dumps({"index": {"_index": "fz", "_id": "9"}}), json.dumps({"i": "not a number"})]
    _, bulk_err = call(base, "POST", "/_bulk", ("\n".join(lines) + "\n").encode(),
                       "application/x-ndjson")
    out.append((4, cluster, 0, [seg(bulk_ok), seg(bulk_ok)]))
    out.append((4, cluster, 0, [seg(bulk_err), seg(bulk_err)]))
    items = json.loads(bulk_err)["items"]
    out.append((4, cluster, 0, [structured(items), structured(items[::-1])]))
    # multi-get, mapping, import, elastic_request
    _, mget = call(base, "POST", "/fz/_mget?_source=false", {"ids": ["1", "2", "404"]})
    out.append((5, cluster, 0, [seg(mget)]))
    out.append((5, cluster, 0, [structured(json.loads(mget)["docs"])]))
    _, mapping = call(base, "GET", "/fz/_mapping")
    out.append((6, cluster, 0, [seg(mapping)]))
    _, mappings = call(base, "GET", "/fz*/_mapping")
    out.append((7, cluster, 0, [seg(mappings)]))
    out.append((7, cluster, 0, [structured(list(json.loads(mappings).values()))]))
    out.append((7, cluster, 1, [seg(call(base, "GET", "/fz/_doc/1")[1])]))
    # errors: a missing index (404 with ES's error body), a 400, a 503
    st, missing = call(base, "POST", "/nope/_search", {"size": 1})
    out.append((0, cluster, 0x01, [seg(missing, status=404)]))
    st, bad = call(base, "POST", "/fz/_search", {"size": 1, "sort": ["t"]})
    out.append((0, cluster, 0x01, [seg(bad, status=400)]))
    out.append((3, cluster, 0, [seg(missing, status=503), seg(missing, status=404)]))
    for flow, c, b1, segs in out:
        write("elastic", flow | (c << 3), b1, segs)
    return len(out)


# --------------------------------------------------------------------------
# Qdrant
# --------------------------------------------------------------------------

POINTS = [
    {"id": 1, "vector": [1.0, 0.0, 0.5], "payload": {"document": "first", "grp": "a", "n": 1,
                                                      "score": 0.5, "tags": ["x"], "at": "2024-03-01T00:00:00Z"}},
    {"id": 2, "vector": [0.5, 0.25, -1e-30], "payload": {"grp": "b", "n": 2.0, "flag": True}},
    {"id": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "vector": [-1, 2, 3.25],
     "payload": {"document": "\u00e9\u4e2d \"q\"", "grp": "\u00e9\u4e2d", "n": 9223372036854775807}},
    {"id": 7, "vector": [0, 0, 1e-3], "payload": {}},
]


def qdrant_seeds():
    import qdrant_fixture
    fx = qdrant_fixture.Fixture()
    fx.add_collection("fz_vec", 3, "Cosine", POINTS)
    fx.add_collection("other", 2, "Euclid")
    fx.add_collection("named", 2, "Dot")
    base = "http://127.0.0.1:%d" % fx.start()
    out = []
    try:
        _, desc = call(base, "GET", "/collections/fz_vec")
        with_all = {"with_payload": True, "with_vector": True}
        _, sc1 = call(base, "POST", "/collections/fz_vec/points/scroll", dict(with_all, limit=2))
        off = json.loads(sc1)["result"]["next_page_offset"]
        _, sc2 = call(base, "POST", "/collections/fz_vec/points/scroll", dict(with_all, limit=2, offset=off))
        _, ret = call(base, "POST", "/collections/fz_vec/points",
                      dict(with_all, ids=[1, 2, "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"]))
        _, q = call(base, "POST", "/collections/fz_vec/points/query",
                    dict(with_all, query=[1, 0, 0.5], limit=3))
        _, lst = call(base, "GET", "/collections")
        _, other = call(base, "GET", "/collections/other")
        _, up = call(base, "PUT", "/collections/fz_vec/points?wait=true",
                     {"points": [{"id": 9, "vector": [1, 1, 1], "payload": {}}]})
        _, dele = call(base, "POST", "/collections/fz_vec/points/delete?wait=true", {"points": [9]})
        st404, nf = call(base, "GET", "/collections/nope")
        st400, bad = call(base, "POST", "/collections/fz_vec/points/query",
                          dict(with_all, query=[1, 0], limit=3))
        named = json.loads(desc)
        named["result"]["config"]["params"]["vectors"] = {"text": {"size": 3, "distance": "Cosine"}}
        pts = json.loads(ret)["result"]
        qpts = json.loads(q)["result"]["points"]
        for dist in (0, 1, 2):
            b0 = dist << 3
            out.append((0 | b0, 0, [seg(sc1), seg(sc2)]))
            out.append((0 | b0, 3, [seg(sc1), seg(sc2)]))
            out.append((1 | b0, 1, [seg(ret), seg(ret)]))
            out.append((2 | b0, 0, [seg(q)]))
            out.append((3 | b0, 0, [seg(sc1), seg(sc2)]))
            out.append((4 | b0, 4, [seg(q)]))
            out.append((4 | b0, 9, [seg(q)]))
        out.append((0 | 0x20, 0, [seg(desc), seg(sc1), seg(sc2)]))
        out.append((0 | 0x20, 0, [seg(named)]))
        out.append((0 | 0x20, 0, [seg(nf, status=404)]))
        out.append((2 | 0x08, 0, [seg(bad, status=400)]))
        out.append((5, 0, [seg(desc)]))
        out.append((6, 0, [seg(lst), seg(desc), seg(other), seg(desc)]))
        out.append((7, 0, [seg(up), seg(dele), seg(up)]))
        out.append((7 | 0x20, 0, [seg(nf, status=404), seg(up), seg(up)]))
        # structured: points one per line
        out.append((0, 0, [structured(pts[:2]), structured(pts[2:])]))
        out.append((1, 0, [structured(pts)]))
        out.append((2 | 0x08, 0, [structured(qpts)]))
        out.append((4 | 0x08, 8, [structured(qpts)]))
        out.append((0, 0, [structured(pts[:1] + [{"id": 3, "vector": [1, 2, 3],
                                                  "payload": {"document": "nul \u0000",
                                                              "grp": "x\u0000"}}])]))
        out.append((5, 0, [seg("4", STRUCT)]))
        out.append((6, 0, [structured([{"name": "fz_vec"}, {"name": "other"}]), seg(desc), seg(other)]))
    finally:
        fx.stop()
    for b0, b1, segs in out:
        write("qdrant", b0, b1, segs)
    return len(out)


# --------------------------------------------------------------------------
# Chroma
# --------------------------------------------------------------------------

def chroma_seeds(url):
    base = url.rstrip("/")
    db = "/api/v2/tenants/default_tenant/databases/default_database"
    name = "pgpoly_fuzz_seeds"
    call(base, "DELETE", db + "/collections/" + name)
    st, coll = call(base, "POST", db + "/collections",
                    {"name": name, "get_or_create": True,
                     "configuration": {"hnsw": {"space": "cosine"}}})
    if st != 200:
        raise SystemExit("Chroma: could not create a collection: %s %s" % (st, coll))
    cid = json.loads(coll)["id"]
    rec = db + "/collections/" + cid
    st, r = call(base, "POST", rec + "/upsert", {
        "ids": ["1", "2", "3", "4"],
        "embeddings": [[1, 0, 0.5], [0.5, 0.25, -1e-30], [-1, 2, 3.25], [0, 0, 0]],
        "documents": ["first", None, "third \"q\" \\", "\u00e9\u4e2d"],
        "metadatas": [{"grp": "a", "n": 1, "score": 0.5, "at": "2024-03-01T00:00:00Z"},
                      {"grp": "b", "n": 2.5, "flag": True}, None,
                      {"grp": "a", "n": 9007199254740993, "flag": False}]})
    if st != 200:
        raise SystemExit("Chroma: upsert failed: %s %s" % (st, r))
    inc = ["embeddings", "documents", "metadatas"]
    _, desc = call(base, "GET", db + "/collections/" + name)
    _, g1 = call(base, "POST", rec + "/get", {"limit": 2, "offset": 0, "include": inc})
    _, g2 = call(base, "POST", rec + "/get", {"limit": 2, "offset": 2, "include": inc})
    _, g3 = call(base, "POST", rec + "/get", {"limit": 2, "offset": 4, "include": inc})
    _, gid = call(base, "POST", rec + "/get", {"ids": ["1", "2", "x y"], "include": inc})
    _, gwhere = call(base, "POST", rec + "/get", {"limit": 2, "offset": 0, "include": inc,
                                                   "where": {"$and": [{"grp": {"$eq": "a"}},
                                                                      {"n": {"$gte": 1}}]}})
    _, q = call(base, "POST", rec + "/query", {"query_embeddings": [[1, 0, 0.5]], "n_results": 3,
                                               "include": inc + ["distances"]})
    _, cnt = call(base, "GET", rec + "/count")
    _, lst = call(base, "GET", db + "/collections?limit=100&offset=0")
    _, up = call(base, "POST", rec + "/upsert", {"ids": ["9"], "embeddings": [[1, 1, 1]],
                                                 "documents": [None], "metadatas": [None]})
    _, dele = call(base, "POST", rec + "/delete", {"ids": ["9"]})
    st404, nf = call(base, "GET", db + "/collections/pgpoly_fuzz_none")
    st400, bad = call(base, "POST", rec + "/query", {"query_embeddings": [[1, 0]], "n_results": 3,
                                                     "include": inc})
    call(base, "DELETE", db + "/collections/" + name)
    # The collection as the harness names it.
    desc = desc.replace(name.encode(), b"fz_vec")
    lst = json.loads(lst)
    for c in lst:
        if c.get("name") == name:
            c["name"] = "fz_vec"
    recs = []
    qd = json.loads(q)
    for i in range(len(qd["ids"][0])):
        recs.append([qd["ids"][0][i], qd["embeddings"][0][i], qd["documents"][0][i],
                     qd["metadatas"][0][i], qd["distances"][0][i]])
    out = []
    for dist in (0, 1, 2):
        b0 = dist << 3
        out.append((0 | b0, 0, [seg(g1), seg(g2), seg(g3)]))
        out.append((0 | b0, 3, [seg(gwhere), seg(g3)]))
        out.append((1 | b0, 1, [seg(gid), seg(gid)]))
        out.append((2 | b0, 0, [seg(q)]))
        out.append((3 | b0, 0, [seg(g1), seg(g2), seg(g3)]))
        out.append((4 | b0, 4, [seg(q)]))
        out.append((4 | b0, 9, [seg(q)]))
    out.append((0 | 0x20, 0, [seg(desc), seg(g1), seg(g3)]))
    out.append((0 | 0x20, 0, [seg(nf, status=404)]))
    out.append((2 | 0x08, 0, [seg(bad, status=400)]))
    out.append((2 | 0x08, 0, [seg(nf, status=404), seg(desc), seg(q)]))
    out.append((5, 0, [seg(cnt)]))
    out.append((6, 0, [seg(lst)]))
    out.append((6, 0, [structured(lst)]))
    out.append((7, 0, [seg(up), seg(dele), seg(up)]))
    out.append((7 | 0x20, 0, [seg(nf, status=404), seg(desc), seg(up), seg(dele), seg(up)]))
    out.append((0, 0, [structured(recs[:2]), structured(recs[2:])]))
    out.append((2 | 0x08, 0, [structured(recs)]))
    out.append((4 | 0x08, 8, [structured(recs)]))
    out.append((0, 0, [structured(recs[:1] + [["n", [1, 2, 3], "nul \u0000", {"grp": "x\u0000"}]])]))
    for b0, b1, segs in out:
        write("chroma", b0, b1, segs)
    # Keep the raw responses too, for reference.
    with open(os.path.join(HERE, "chroma_responses.json"), "w") as f:
        json.dump({"collection": json.loads(desc), "get": json.loads(g1), "query": qd,
                   "count": json.loads(cnt), "error_404": json.loads(nf),
                   "error_400": json.loads(bad)}, f, indent=1, sort_keys=True)
        f.write("\n")
    return len(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chroma-url", default=os.environ.get("CHROMA_URL"))
    args = ap.parse_args()
    print("elastic: %d seeds" % es_seeds())
    print("qdrant: %d seeds" % qdrant_seeds())
    if args.chroma_url:
        print("chroma: %d seeds" % chroma_seeds(args.chroma_url))
    else:
        print("chroma: no --chroma-url, seeds unchanged")


if __name__ == "__main__":
    main()
