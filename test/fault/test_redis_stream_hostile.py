#!/usr/bin/env python3
"""A hostile or refusing Redis on the write stream (the second connection
that queues a transaction's writes in a MULTI while its statements run).

A small RESP server (FakeRedis below) applies MULTI/EXEC of HSET to a dict
and answers like Redis on the backend's first connection (the main one);
on any later connection (the stream) it misbehaves as the case asks:

  * queued_int  -- a queued command answered ":1" instead of +QUEUED, read
                   by the next statement's push: the stream is dropped
                   (closed without EXEC), the statement goes on, and COMMIT
                   sends everything on the main connection: all rows
                   applied, none through the stream;
  * refuse      -- the stream holds its replies until EXEC, then refuses
                   the fifth command at queue time (-ERR) and answers EXEC
                   with -EXECABORT, as Redis does: COMMIT fails with the
                   ERROR today's COMMIT gives (HV000 naming the key of the
                   fifth row and what Redis said); nothing applied;
  * exec_status -- EXEC answered +OK (no array): COMMIT fails with 08P01,
                   nothing applied;
  * split       -- every +QUEUED reaches the backend in two pieces ("+QUE"
                   now, "UED\r\n" with the next reply), one statement per
                   row: a reply the reader had begun is still a QUEUED, the
                   stream is kept and its EXEC applies every row;
and after each the next transaction works (a new stream) and writes its
rows.  The backend never crashes.
"""

import threading

import pgtest

check = pgtest.check

LOCK = threading.Lock()
STATE = {"mode": "normal", "conns": 0, "data": {}, "stream_execs": 0}


def serve(sock):
    """One connection: the first ever is the main one, later ones streams."""
    with LOCK:
        STATE["conns"] += 1
        stream = STATE["conns"] > 1
    queued = None
    held = []
    tail = b""
    try:
        for cmd in pgtest.resp_commands(sock):
            name = cmd[0].upper()
            mode = STATE["mode"] if stream else "normal"
            out = b""
            if name == b"MULTI":
                queued = []
                out = b"+OK\r\n"
            elif name == b"EXEC":
                out, tail = tail + exec_reply(queued, mode, stream), b""
                queued = None
            elif queued is not None:
                queued.append(cmd)
                if mode == "queued_int" and len(queued) == 3:
                    out = b":1\r\n"
                elif mode == "refuse" and len(queued) == 5:
                    out = b"-ERR refused by policy\r\n"
                elif mode == "split":
                    out, tail = tail + b"+QUE", b"UED\r\n"
                else:
                    out = b"+QUEUED\r\n"
            elif name == b"PING":
                out = b"+PONG\r\n"
            else:
                out = b"-ERR unknown command\r\n"
            if mode == "refuse" and name != b"EXEC":
                held.append(out)
                continue
            if mode == "refuse":
                out = b"".join(held) + out
                held = []
            sock.sendall(out)
            if out == b":1\r\n":
                STATE["bad_sent"] = True
    except (EOFError, OSError):
        pass
    sock.close()


def exec_reply(queued, mode, stream):
    """EXEC of queued on a connection in mode; applies HSETs when it runs."""
    if stream:
        STATE["stream_execs"] += 1
    if mode == "exec_status":
        return b"+OK\r\n"
    if mode == "refuse":
        return (b"-EXECABORT Transaction discarded because of previous "
                b"errors.\r\n")
    with LOCK:
        for c in queued:
            if c[0].upper() == b"HSET":
                h = STATE["data"].setdefault(c[1].decode(), {})
                for i in range(2, len(c) - 1, 2):
                    h[c[i].decode()] = c[i + 1].decode()
    return b"*%d\r\n" % len(queued) + b":1\r\n" * len(queued)


def test():
    mark = pgtest.pg_log_mark()
    lsock = pgtest.serve_tcp(serve)
    port = lsock.getsockname()[1]
    db = pgtest.create_db("pgpoly_stream_hostile")
    r = pgtest.psql("""
        CREATE SERVER fake FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '3000');
        CREATE FOREIGN TABLE h (key text, a int) SERVER fake
            OPTIONS (table_type 'hash', key_prefix 's:');""" % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")
    s.run("SET pgpoly.redis_stream_threshold = 1;")
    n = 0
    for mode in ("queued_int", "refuse", "exec_status", "split"):
        STATE["mode"] = mode
        STATE["data"].clear()
        execs = STATE["stream_execs"]
        STATE["bad_sent"] = False
        if mode == "split":
            s.run("BEGIN;")
            for i in range(1, 7):
                s.run("INSERT INTO h VALUES ('k%d', %d);" % (i, i), timeout=20)
        else:
            r = s.run("BEGIN; INSERT INTO h SELECT 'k' || g, g "
                      "FROM generate_series(1, 100) g;", timeout=20)
        if mode == "queued_int":
            # the next statement's push reads the bad reply, already sent
            check(pgtest.wait_for(lambda: STATE["bad_sent"]),
                  "queued_int: the fake never answered :1")
            r = s.run("INSERT INTO h VALUES ('k101', 101); COMMIT;", timeout=20)
            check(r.rc == 0, "queued_int: COMMIT failed: %s" % r.err)
            check(len(STATE["data"]) == 101 and STATE["data"].get("s:k7") == {"a": "7"},
                  "queued_int: %d hashes applied, want 101" % len(STATE["data"]))
        else:
            r = s.run("COMMIT;", timeout=20)
        if mode == "queued_int":
            check(STATE["stream_execs"] == execs,
                  "queued_int: the stream was EXECed after a bad reply")
        elif mode == "refuse":
            check(r.sqlstate == "HV000" and '"s:k5"' in r.err and
                  "refused by policy" in r.err,
                  "refuse: want HV000 naming key s:k5 and Redis' answer, got "
                  "%s: %s" % (r.sqlstate, r.err))
            check(STATE["data"] == {}, "refuse: something was applied")
        elif mode == "split":
            check(r.rc == 0 and len(STATE["data"]) == 6 and
                  STATE["data"].get("s:k6") == {"a": "6"},
                  "split: COMMIT failed or applied %d of 6 rows: %s"
                  % (len(STATE["data"]), r.err))
        else:
            check(r.sqlstate == "08P01" and "EXEC" in r.err,
                  "exec_status: want 08P01 about EXEC, got %s: %s"
                  % (r.sqlstate, r.err))
            check(STATE["data"] == {}, "exec_status: something was applied")
        check(mode == "queued_int" or STATE["stream_execs"] == execs + 1,
              "%s: the stream's EXEC was not the one that ran" % mode)
        s.run("ROLLBACK;")
        # The next transaction works, through a new stream.
        STATE["mode"] = "normal"
        STATE["data"].clear()
        n += 1
        r = s.run("BEGIN; INSERT INTO h SELECT 'n%d' || g, g "
                  "FROM generate_series(1, 50) g; COMMIT;" % n)
        check(r.rc == 0 and len(STATE["data"]) == 50,
              "%s: the next transaction failed or wrote %d of 50: %s"
              % (mode, len(STATE["data"]), r.err))
    check(s.value("SELECT pg_backend_pid();") == pid, "the backend changed")
    s.close()
    lsock.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
