#!/usr/bin/env python3
"""Direct Elasticsearch client for test/bench/bench_elastic.sh.

The baseline pgpoly_elastic is compared with: the same requests sent by a
plain keep-alive HTTP client (stdlib http.client), responses parsed with
json.loads, as any application would.

  es_direct.py URL create INDEX         PUT /INDEX with the bench mapping
  es_direct.py URL delete INDEX         DELETE /INDEX
  es_direct.py URL bulk INDEX N BATCH   _bulk N documents in BATCH-sized requests
  es_direct.py URL scan INDEX PAGE      PIT + search_after over the index
Each prints "<seconds> <count>".
"""

import http.client
import json
import sys
import time
from urllib.parse import urlsplit

MAPPING = {"mappings": {"properties": {
    "n": {"type": "long"}, "grp": {"type": "keyword"},
    "label": {"type": "keyword"}}}}


class Client:
    def __init__(self, url):
        u = urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 9200,
                                               timeout=300)

    def request(self, method, path, body=None, ctype="application/json"):
        headers = {"Content-Type": ctype} if body is not None else {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300 and not (method == "DELETE" and r.status == 404):
            sys.exit("es_direct: %s %s -> %d %s" % (method, path, r.status,
                                                    data[:300]))
        return json.loads(data) if data else None


def doc_lines(i):
    """The NDJSON of document i, as pgpoly writes it for the bench row."""
    return ('{"index":{"_index":"%s","_id":"b%d"}}\n'
            % (INDEX, i) + json.dumps({"n": i, "grp": "g%d" % (i % 3),
                                       "label": "label %d" % i},
                                      separators=(",", ":")) + "\n")


def bulk(c, n, batch):
    bodies = []
    for start in range(1, n + 1, batch):
        bodies.append("".join(doc_lines(i) for i in
                              range(start, min(n, start + batch - 1) + 1)))
    t0 = time.monotonic()
    for b in bodies:
        r = c.request("POST", "/_bulk", b.encode(), "application/x-ndjson")
        if r.get("errors"):
            sys.exit("es_direct: bulk item errors")
    return time.monotonic() - t0, n


def scan(c, page):
    t0 = time.monotonic()
    pit = c.request("POST", "/%s/_pit?keep_alive=1m" % INDEX)["id"]
    after = None
    count = 0
    while True:
        body = {"query": {"match_all": {}}, "_source": ["n", "grp", "label"],
                "sort": [{"_shard_doc": "asc"}], "size": page,
                "track_total_hits": False,
                "pit": {"id": pit, "keep_alive": "1m"}}
        if after is not None:
            body["search_after"] = after
        r = c.request("POST", "/_search", body)
        pit = r.get("pit_id", pit)
        hits = r["hits"]["hits"]
        for h in hits:
            count += 1
            h["_source"].get("n")
        if len(hits) < page:
            break
        after = hits[-1]["sort"]
    c.request("DELETE", "/_pit", {"id": pit})
    return time.monotonic() - t0, count


def main():
    global INDEX
    url, cmd, INDEX = sys.argv[1:4]
    c = Client(url)
    if cmd == "create":
        c.request("DELETE", "/" + INDEX)
        c.request("PUT", "/" + INDEX, MAPPING)
        print("0 0")
    elif cmd == "delete":
        c.request("DELETE", "/" + INDEX)
        print("0 0")
    elif cmd == "bulk":
        print("%.3f %d" % bulk(c, int(sys.argv[4]), int(sys.argv[5])))
    elif cmd == "scan":
        print("%.3f %d" % scan(c, int(sys.argv[4])))


if __name__ == "__main__":
    main()
