#!/usr/bin/env python3
"""A k-NN computed locally that fails on its filter frees what it parsed.

A k-NN on pgpoly_vector with buffered writes is computed in the backend:
each buffered row's metadata is parsed (jansson, malloc'd) and checked
against the pushed conditions (row_matches).  In a SQL_ASCII database a
condition value that is not valid UTF-8 is an ERROR 22021 while that check
runs; the parsed metadata must not be lost with it (it was: a leak of the
row's whole metadata per failed statement, which no context reset frees).

One session repeats BEGIN; INSERT (a record with a large metadata value,
into a collection that does not exist yet, so that only the buffered row is
checked); the k-NN with the invalid value (22021); ROLLBACK.  After a
warm-up, the backend's anonymous memory (RssAnon) must not grow by more
than RSS_TOL_KB over ROUNDS statements (each leak was > LEAK_KB).  Under
valgrind (`make valgrind`), whose queue of freed blocks makes RssAnon grow
anyway, the RssAnon check is left to memcheck's leak report.
Needs the harness's Chroma (CHROMA_URL).
"""

import os

import pgtest
import pgwire
from pgtest import check

TAG = "vlfe%d" % os.getpid()
ROUNDS = 20
LEAK_KB = 256           # the metadata value each statement parses
RSS_TOL_KB = 768        # a glibc arena step is 128-132 kB


def under_valgrind(pid):
    """Whether backend pid runs under valgrind (its command is the tool's)."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().startswith("memcheck")
    except OSError:
        return False


def state(results):
    """The SQLSTATE of the first error among results, or None."""
    return next((x.error.get("C") for x in results if x.error), None)


def test():
    url = os.environ.get("CHROMA_URL")
    if not check(url is not None, "CHROMA_URL is set by the harness"):
        return
    db = pgtest.create_db(TAG, encoding="SQL_ASCII")
    c = pgwire.Conn(db)
    r = c.query("CREATE SERVER ch FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s');"
                "CREATE USER MAPPING FOR CURRENT_USER SERVER ch;"
                "CREATE FOREIGN TABLE vv (id text, embedding real[], k text, big text) "
                "SERVER ch OPTIONS (collection '%s', create_collection 'true', "
                "distance 'l2');" % (url, TAG))
    if not check(state(r) is None, "setup: %r" % r):
        return
    pid = int(c.query("SELECT pg_backend_pid()")[0].rows[0][0])
    knn = ("SELECT id FROM vv WHERE k = convert_from('\\xe9'::bytea, 'SQL_ASCII') "
           "ORDER BY embedding <-> '{1,0}' LIMIT 1")
    states = []

    def rounds(n):
        for _ in range(n):
            c.query("BEGIN")
            c.query("INSERT INTO vv VALUES ('a', '{1,0}', 'x', repeat('m', %d))"
                    % (LEAK_KB * 1024))
            states.append(state(c.query(knn)))
            c.query("ROLLBACK")

    rounds(5)
    a = pgtest.proc_status_kb(pid, "RssAnon")
    rounds(ROUNDS)
    b = pgtest.proc_status_kb(pid, "RssAnon")
    print("RssAnon %d -> %d kB over %d failed k-NN statements" % (a, b, ROUNDS))
    check(set(states) == {"22021"},
          "the k-NN with a condition value not valid UTF-8 fails with 22021: %r"
          % sorted(set(states), key=str))
    if under_valgrind(pid):
        print("note: the backend runs under valgrind: its leak report checks the memory")
    else:
        check(b - a <= RSS_TOL_KB,
              "RssAnon grew by %d kB over %d failed statements (the parsed metadata leaks)"
              % (b - a, ROUNDS))
    c.close()


pgtest.main(test)
