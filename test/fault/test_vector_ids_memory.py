#!/usr/bin/env python3
"""A pgpoly_vector scan of a long id list holds memory in proportion to it.

SELECT count(*) FROM t WHERE id = ANY(<300000 ids>), fetch_size 1000,
against the real Chroma ($CHROMA_URL; one record exists): 300 requests of
1000 ids each.  Each request used to copy the list of the ids not asked
yet, and keep the copy until the scan ended: 300000^2 / 2000 list cells,
about 360 MB more at the backend's peak (VmHWM), for 2 MB of ids.  The
peak may now grow by 100 MB at most (the ids, their key table, the
requests).  The count is right (1).
"""

import os

import pgtest

check = pgtest.check

N = 300000


def test():
    chroma = os.environ.get("CHROMA_URL")
    if not check(chroma is not None, "CHROMA_URL is set by the harness"):
        return
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_vector_ids_memory")
    a = pgtest.Session(db)
    a.value("""
        CREATE SERVER vs FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s');
        CREATE FOREIGN TABLE t (id text, embedding real[]) SERVER vs
          OPTIONS (collection 'pgpoly_ids_memory', create_collection 'true',
                   distance 'l2', write_mode 'immediate');
        DELETE FROM t;
        INSERT INTO t VALUES ('id7', '{1,0}');""" % chroma)
    pid = int(a.value("SELECT pg_backend_pid();"))
    ids = "ARRAY(SELECT 'id' || g FROM generate_series(1, %d) g)" % N
    a.value("SELECT count(*) FROM generate_series(1, %d) g WHERE ('id' || g) = ANY(%s);"
            % (1000, ids))  # the backend's own memory for such an array
    before = pgtest.proc_status_kb(pid, "VmHWM")
    r = a.run("SELECT count(*) FROM t WHERE id = ANY(%s);" % ids, timeout=300)
    after = pgtest.proc_status_kb(pid, "VmHWM")
    grew = (after - before) // 1024
    print("scan of %d ids, fetch_size 1000: peak memory +%d MB, %.1f s"
          % (N, grew, r.elapsed))
    check(r.rc == 0 and r.out.strip() == "1",
          "count over %d ids: %r %s" % (N, r.out.strip(), r.err.strip()[:300]))
    check(grew <= 100, "the scan of %d ids raised the backend's peak memory by %d MB, "
          "want at most 100" % (N, grew))
    a.run("DELETE FROM t;")
    a.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
