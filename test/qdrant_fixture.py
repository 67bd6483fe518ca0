"""A stand-in for the Qdrant REST API, for the pgpoly_vector tests (stdlib only).

Qdrant cannot be installed on these machines (no Debian or npm package), so
test/fault/test_vector_qdrant.py runs pgpoly_vector against this server.  It
keeps collections and points in memory and answers the routes pgpoly sends,
with the response shapes of the Qdrant API reference
(https://api.qdrant.tech/api-reference):

  GET  /collections                  {"result": {"collections": [{"name"}]}}
                                     (collections/get-collections)
  GET  /collections/{c}              {"result": {"status", "config": {"params":
                                     {"vectors": {"size", "distance"}}}, ...}}
                                     (collections/get-collection)
  PUT  /collections/{c}              {"result": true}  (create-collection)
  POST /collections/{c}/points       {"result": [points]}  (points/get-points)
  POST /collections/{c}/points/scroll   {"result": {"points", "next_page_offset"}}
                                     (points/scroll-points: sorted by id, offset
                                     = the first id of the page)
  POST /collections/{c}/points/query {"result": {"points": [scored points]}}
                                     (search/query-points)
  PUT  /collections/{c}/points       {"result": {"operation_id", "status":
                                     "completed"}}  (points/upsert-points;
                                     "update_mode" (UpdateMode):
                                     "insert_only" leaves existing points
                                     alone, "update_only" creates no point:
                                     an id that is not there is skipped and
                                     the answer is still success, as Qdrant's
                                     tests/openapi test_update_only_mode
                                     asserts)
  POST /collections/{c}/points/delete   same  (points/delete-points)

Every response carries "status": "ok" and "time"; errors are
{"status": {"error": "..."}, "time"} with HTTP 400/404 as Qdrant sends them.
Scores follow Qdrant's metrics: Euclid is the distance, Cosine the cosine
similarity, Dot the dot product (best first).  Filters support what pgpoly
sends: must/must_not/should, {"key", "match": {"value"|"any"}}, {"key",
"range"}, has_id, is_empty.

A test can make a collection's write requests fail after the first few
(fail_writes), as a service that goes wrong in the middle of a flush, and
can run a function after a request is answered (after), as another client
whose write lands between two of pgpoly's requests.

Every request is logged as (method, path, parsed body, headers) in .log, so
a test can assert the exact bodies pgpoly sent.
"""

import json
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def _ok(result):
    return 200, {"result": result, "status": "ok", "time": 0.0001}


def _err(status, message):
    return status, {"status": {"error": message}, "time": 0.0001}


def _id_key(pid):
    """Qdrant orders integer ids before UUIDs."""
    return (0, pid, "") if isinstance(pid, int) else (1, 0, pid)


class Fixture:
    """The in-memory service; start() serves it on 127.0.0.1."""

    def __init__(self):
        self.collections = {}  # name -> {"size", "distance", "points": {id: point}}
        self.log = []
        self.fail = {}  # name -> (status, message) for every route of it
        self.fail_writes = {}  # name -> [skip, status, message]: the first
        #                        skip write requests (upsert, delete) of it
        #                        succeed, every later one fails, applying nothing
        self.overfill = False  # lie: queries answer every point, farthest first
        self.lie_ids = None  # lie: "dup" gets by id answer each point twice,
        #                      "extra" gets and queries ignore the ids asked
        self.mangle = None  # lie: f(method, path, result) -> the result sent
        #                     instead, for 200 answers of point routes
        self.after = None  # f(fixture, method, path): run (under the lock)
        #                    after each request is answered, as another
        #                    client writing between pgpoly's requests
        self.lock = threading.Lock()
        self.server = None
        self.open = set()  # sockets of the connections being served

    # -- set-up ---------------------------------------------------------
    def add_collection(self, name, size, distance, points=()):
        self.collections[name] = {"size": size, "distance": distance, "points": {}}
        for p in points:
            self.collections[name]["points"][p["id"]] = dict(p)

    def start(self, port=0):
        """Serve on port (0: a free one, e.g. again on the port it had); return it."""
        fixture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                # (no 40 ms delayed-ACK stall per answer of a keep-alive connection)
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with fixture.lock:
                    fixture.open.add(self.connection)

            def finish(self):
                with fixture.lock:
                    fixture.open.discard(self.connection)
                super().finish()

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                url = urlsplit(self.path)
                with fixture.lock:
                    fixture.log.append((self.command, self.path, body, dict(self.headers)))
                    status, doc = fixture.handle(self.command, unquote(url.path), body)
                    if fixture.mangle and status == 200 and "/points" in url.path:
                        doc = dict(doc, result=fixture.mangle(self.command, url.path,
                                                              doc["result"]))
                    if fixture.after:
                        fixture.after(fixture, self.command, unquote(url.path))
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def stop(self):
        """Stop serving and drop the open (keep-alive) connections too."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        with self.lock:
            for sock in list(self.open):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def requests(self, method=None, suffix=None):
        """Logged (method, path, body, headers), optionally narrowed."""
        with self.lock:
            return [r for r in self.log
                    if (method is None or r[0] == method)
                    and (suffix is None or r[1].split("?")[0].endswith(suffix))]

    def clear_log(self):
        with self.lock:
            self.log.clear()

    # -- routes ---------------------------------------------------------
    def handle(self, method, path, body):
        parts = [p for p in path.split("/") if p]
        if parts == ["collections"] and method == "GET":
            return _ok({"collections": [{"name": n} for n in sorted(self.collections)]})
        if len(parts) < 2 or parts[0] != "collections":
            return _err(404, "Not found")
        name = parts[1]
        rest = parts[2:]
        if name in self.fail:
            return _err(*self.fail[name])
        if method == "PUT" and not rest:
            if name in self.collections:
                return _err(409, "Wrong input: Collection `%s` already exists!" % name)
            v = body["vectors"]
            self.add_collection(name, v["size"], v["distance"])
            return _ok(True)
        coll = self.collections.get(name)
        if coll is None:
            return _err(404, "Not found: Collection `%s` doesn't exist!" % name)
        if method == "GET" and not rest:
            return _ok({"status": "green", "optimizer_status": "ok",
                        "indexed_vectors_count": 0, "points_count": len(coll["points"]),
                        "segments_count": 1,
                        "config": {"params": {"vectors": {"size": coll["size"],
                                                          "distance": coll["distance"]},
                                              "shard_number": 1,
                                              "replication_factor": 1,
                                              "on_disk_payload": True}},
                        "payload_schema": {}})
        route = (method, tuple(rest))
        if name in self.fail_writes and route in (("PUT", ("points",)),
                                                  ("POST", ("points", "delete"))):
            fw = self.fail_writes[name]
            if fw[0] <= 0:
                return _err(fw[1], fw[2])
            fw[0] -= 1
        if route == ("POST", ("points",)):
            pts = [coll["points"][i] for i in body["ids"] if i in coll["points"]]
            if self.lie_ids == "dup":
                pts = pts + pts
            elif self.lie_ids == "extra":
                pts = list(coll["points"].values())
            return _ok([self._out(p, body) for p in pts])
        if route == ("POST", ("points", "scroll")):
            return self._scroll(coll, body)
        if route == ("POST", ("points", "query")):
            return self._query(coll, body)
        if route == ("PUT", ("points",)):
            for p in body["points"]:
                if len(p["vector"]) != coll["size"]:
                    return _err(400, "Wrong input: Vector dimension error: expected dim: "
                                "%d, got %d" % (coll["size"], len(p["vector"])))
            mode = body.get("update_mode", "upsert")
            if mode not in ("upsert", "insert_only", "update_only"):
                return _err(400, "Format error in JSON body: unknown variant `%s`, "
                            "expected one of `upsert`, `insert_only`, `update_only`"
                            % mode)
            for p in body["points"]:
                if mode == "insert_only" and p["id"] in coll["points"]:
                    continue  # update_mode insert_only: existing points stay
                if mode == "update_only" and p["id"] not in coll["points"]:
                    continue  # update_mode update_only: no point is created
                coll["points"][p["id"]] = {"id": p["id"], "vector": p["vector"],
                                           "payload": p.get("payload") or {}}
            return _ok({"operation_id": len(self.log), "status": "completed"})
        if route == ("POST", ("points", "delete")):
            for i in body["points"]:
                coll["points"].pop(i, None)
            return _ok({"operation_id": len(self.log), "status": "completed"})
        return _err(404, "Not found")

    @staticmethod
    def _out(p, body, score=None):
        """A point as returned, with payload/vector as asked."""
        out = {"id": p["id"], "version": 1}
        if score is not None:
            out["score"] = score
        wp = body.get("with_payload", True)
        if wp is True:
            out["payload"] = p["payload"]
        elif isinstance(wp, list):
            out["payload"] = {k: v for k, v in p["payload"].items() if k in wp}
        else:
            out["payload"] = None
        out["vector"] = p["vector"] if body.get("with_vector") else None
        return out

    def _scroll(self, coll, body):
        limit = body.get("limit", 10)
        pts = sorted((p for p in coll["points"].values()
                      if matches(p, body.get("filter"))), key=lambda p: _id_key(p["id"]))
        if "offset" in body and body["offset"] is not None:
            pts = [p for p in pts if _id_key(p["id"]) >= _id_key(body["offset"])]
        page, rest = pts[:limit], pts[limit:]
        return _ok({"points": [self._out(p, body) for p in page],
                    "next_page_offset": rest[0]["id"] if rest else None})

    def _query(self, coll, body):
        q = body["query"]
        if len(q) != coll["size"]:
            return _err(400, "Wrong input: Vector dimension error: expected dim: %d, got %d"
                        % (coll["size"], len(q)))
        scored = []
        for p in coll["points"].values():
            if self.lie_ids == "extra" or matches(p, body.get("filter")):
                scored.append((score(coll["distance"], p["vector"], q), p))
        best_high = coll["distance"] != "Euclid"
        scored.sort(key=lambda sp: -sp[0] if best_high else sp[0])
        if self.overfill:
            return _ok({"points": [self._out(p, body, s) for s, p in scored[::-1]]})
        return _ok({"points": [self._out(p, body, s)
                               for s, p in scored[:body.get("limit", 10)]]})


def score(distance, v, q):
    """Qdrant's score for two vectors."""
    dot = sum(a * b for a, b in zip(v, q))
    if distance == "Euclid":
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(v, q)))
    if distance == "Cosine":
        return dot / (math.sqrt(sum(a * a for a in v)) * math.sqrt(sum(b * b for b in q)))
    return dot


def _cond(p, c):
    """One filter condition against a point."""
    if "has_id" in c:
        return p["id"] in c["has_id"]
    if "is_empty" in c:
        return p["payload"].get(c["is_empty"]["key"]) in (None, [])
    if "must" in c or "should" in c or "must_not" in c:
        return matches(p, c)
    val = p["payload"].get(c["key"])
    if val is None:
        return False
    # A payload array matches when any of its values does (filtering.html:
    # "if the stored value is an array, it should have at least one value
    # matching").
    return any(_value_cond(v, c) for v in (val if isinstance(val, list) else [val]))


def _value_cond(val, c):
    """One match/range condition against one payload value."""
    if "match" in c:
        m = c["match"]
        if "value" in m:
            return val == m["value"] and type(val) is type(m["value"])
        return val in m["any"] and not isinstance(val, bool)
    r = c["range"]
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        return False
    # Qdrant's range is a floating-point range (filtering/#range; the
    # bounds are f64, as the clients' Range { gt: Option<f64>, ... }): the
    # payload value is converted to f64 and compared with the bounds as
    # f64.  An integer payload beyond 2^53 is therefore compared rounded:
    # 2^53 + 1 is not > 2^53 there.  Python's float() rounds an int as
    # Rust's `as f64` does (to nearest, ties to even).
    val = float(val)
    b = {k: float(v) for k, v in r.items() if v is not None}
    return (("lt" not in b or val < b["lt"]) and
            ("lte" not in b or val <= b["lte"]) and
            ("gt" not in b or val > b["gt"]) and
            ("gte" not in b or val >= b["gte"]))


def matches(p, f):
    """Whether point p passes filter f (None: every point)."""
    if not f:
        return True
    if not all(_cond(p, c) for c in f.get("must") or []):
        return False
    if any(_cond(p, c) for c in f.get("must_not") or []):
        return False
    should = f.get("should")
    return not should or any(_cond(p, c) for c in should)
