#!/usr/bin/env python3
"""A logsdb index keeps malformed values: no comparison of such a field is
pushed.

index.mapping.ignore_malformed defaults to true when index.mode is logsdb
(elastic/elasticsearch#106822): a document whose integer or date field
holds a value the field cannot parse is kept, the value in _source but not
indexed, so a term, range, exists or sort pushed to Elasticsearch would
miss a row PostgreSQL reads from _source.  The default is in neither the
mapping nor the index's own settings; GET /<index>?include_defaults=true
reports it under "defaults".  Before, such an index's integer and date
comparisons were pushed and returned too few rows.  The regress test
elastic_mapping covers the explicit index setting (against a real cluster
too); this one needs the stand-in, which models the logsdb default alone
(a real logsdb index also adds @timestamp and host.name and synthetic
_source, not wanted here).  Each query is checked against a native copy.
"""

import es_helper
import pgtest

check = pgtest.check

QUERIES = [
    "SELECT _id FROM %s WHERE i > 0 ORDER BY _id",
    "SELECT _id FROM %s WHERE i IS NULL ORDER BY _id",
    "SELECT count(*) FROM %s WHERE i >= 5",
    "SELECT _id, i FROM %s ORDER BY i DESC NULLS LAST LIMIT 2",
    "SELECT _id FROM %s WHERE d > '2024-01-01' ORDER BY _id",
    "SELECT _id FROM %s WHERE k = 'a' ORDER BY _id",
]


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    es.request("PUT", "/logs1", {
        "settings": {"index": {"mode": "logsdb"}},
        "mappings": {"properties": {"i": {"type": "integer"}, "d": {"type": "date"},
                                    "k": {"type": "keyword"}}}})
    es_helper.bulk(es, "logs1",
                   {"index": {"_id": "1"}}, {"i": 5, "d": "2024-01-05", "k": "a"},
                   {"index": {"_id": "2"}}, {"i": 3000000000, "d": "2024/01/05", "k": "b"},
                   {"index": {"_id": "3"}}, {"i": -3000000000, "d": "2023-12-31", "k": "a"},
                   {"index": {"_id": "4"}}, {})
    es.request("POST", "/logs1/_refresh")
    db = pgtest.create_db("pgpoly_es_logsdb")
    r = pgtest.psql(
        "CREATE SERVER esl FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');\n" % es.url +
        "CREATE FOREIGN TABLE lg (_id text, i bigint, d date, k text) SERVER esl "
        "OPTIONS (index 'logs1');\n"
        "CREATE TABLE lg_native AS SELECT * FROM lg;\n", db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    for q in QUERIES:
        got = pgtest.psql(q % "lg", db=db)
        want = pgtest.psql(q % "lg_native", db=db)
        check(got.rc == 0 and got.out == want.out,
              "%s: foreign %r (%s) native %r" % (q, got.out, got.err, want.out))
    plan = pgtest.psql("EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM lg "
                       "WHERE i > 0 AND d IS NULL AND k = 'a'", db=db).out
    check("Elasticsearch Pushed Quals: (k = 'a'::text)\n" in plan + "\n" and
          "(lg.i > 0)" in plan and "(lg.d IS NULL)" in plan,
          "want i and d compared locally, k pushed:\n%s" % plan)
    es.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
