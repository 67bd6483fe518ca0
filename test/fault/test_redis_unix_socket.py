#!/usr/bin/env python3
"""Redis through a Unix-domain socket (server option unix_socket).

Two private Redis servers listen on loopback TCP and on a socket each: A
asks for a password (requirepass), B does not.  Checked, in one session:

  * AUTH over the socket: a superuser's mapping with A's password reads and
    writes through the socket, and a TCP server on A sees the same rows; a
    wrong password is 08001 and never quoted.
  * The trust rule holds for the socket exactly as for TCP (a socket is
    reached as the postgres OS user): a non-superuser may create a server
    with unix_socket (as with host), but without a user mapping, or with a
    made-up password for B (which asks for none), is refused with the same
    SQLSTATE and message as the same server over TCP; with A's password it
    works.
  * Paths that lead to no Redis are 08001 naming unix_socket and the path,
    and saying why: no such file, not a socket, permission denied (a
    socket of mode 000), nobody listening (a socket bound but not
    listening).  The backend survives each.
  * Waits on the socket are interruptible: Redis paused (SIGSTOP), a
    statement_timeout of 1 s cancels the statement (57014) before the
    server's timeout_ms of 3 s would end it otherwise.
  * Redis killed while a socket connection is cached: the next statement
    fails with class 08 naming the path; Redis restarted, the next one
    works.
  * No crashed backend in the PostgreSQL log.
"""

import atexit
import os
import re
import shutil
import signal
import socket
import tempfile

import pgtest

check = pgtest.check
ROLE = "pgpoly_us_role_%d" % os.getpid()
PW = "us-secret-pw"


def socket_dir():
    """A short directory the postgres OS user can reach, removed at exit."""
    d = tempfile.mkdtemp(prefix="pgpoly-us-", dir="/tmp")
    os.chmod(d, 0o755)
    atexit.register(shutil.rmtree, d, True)
    return d


def start(path, password=None, port=None):
    """A Redis on loopback TCP and on the socket path (mode 777)."""
    port = pgtest.start_redis(port=port, extra_args=[
        "--unixsocket", path, "--unixsocketperm", "777"])
    if password:
        pgtest.redis_cli(port, "config", "set", "requirepass", password)
    return port


def normalized(err, names):
    """An error text with server names and addresses made comparable."""
    for old, new in names:
        err = err.replace(old, new)
    return re.sub(r"^LOCATION:.*$", "", err, flags=re.M).strip()


def test():
    mark = pgtest.pg_log_mark()
    d = socket_dir()
    sock_a, sock_b = os.path.join(d, "a.sock"), os.path.join(d, "b.sock")
    port_a = start(sock_a, PW)
    port_b = start(sock_b)
    db = pgtest.create_db("pgpoly_unix_socket")
    r = pgtest.psql("""
        CREATE ROLE %(role)s NOLOGIN;
        GRANT USAGE ON FOREIGN DATA WRAPPER pgpoly_redis TO %(role)s;
        GRANT USAGE ON SCHEMA pgpoly TO %(role)s;
        GRANT CREATE ON SCHEMA public TO %(role)s;
        CREATE SERVER sa FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (unix_socket '%(sa)s', timeout_ms '3000');
        CREATE SERVER ta FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%(pa)d');
        CREATE USER MAPPING FOR CURRENT_USER SERVER sa OPTIONS (password '%(pw)s');
        CREATE USER MAPPING FOR CURRENT_USER SERVER ta OPTIONS (password '%(pw)s');
        CREATE FOREIGN TABLE kv_sa (key text OPTIONS (key 'true'), v text)
            SERVER sa OPTIONS (table_type 'string', key_prefix 'us:');
        CREATE FOREIGN TABLE kv_ta (key text OPTIONS (key 'true'), v text)
            SERVER ta OPTIONS (table_type 'string', key_prefix 'us:');
    """ % {"role": ROLE, "sa": sock_a, "pa": port_a, "pw": PW}, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    try:
        run(db, d, sock_a, sock_b, port_a, port_b)
    finally:
        pgtest.psql("DROP OWNED BY %s; DROP ROLE %s;" % (ROLE, ROLE), db=db)
    pgtest.check_pg_log(mark)


def run(db, d, sock_a, sock_b, port_a, port_b):
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")

    def expect(sql, state, what, present=(), absent=()):
        """sql fails with SQLSTATE state (or a class: its prefix)."""
        r = s.run(sql, timeout=30)
        check(r.rc == 1 and (r.sqlstate or "").startswith(state),
              "%s: want SQLSTATE %s, got rc=%s %s: %s"
              % (what, state, r.rc, r.sqlstate, r.err.strip()))
        for p in present:
            check(p in r.err, "%s: %r is not in the message: %s" % (what, p, r.err))
        for a in absent:
            check(a not in r.err, "%s: %r is in the message: %s" % (what, a, r.err))
        check(s.value("SELECT pg_backend_pid();") == pid,
              "%s: the backend died" % what)
        return r

    # --- AUTH over the socket, the same data as over TCP ------------------
    r = s.run("INSERT INTO kv_sa SELECT 'k' || i, md5(i::text) "
              "FROM generate_series(1, 300) i;")
    check(r.rc == 0, "INSERT through the socket failed: %s" % r.err)
    check(pgtest.redis_cli(port_a, "-a", PW, "--no-auth-warning", "dbsize")[1] == "300",
          "300 keys written through the socket are not in Redis A")
    diff = s.value("""
        SELECT count(*) FROM ((SELECT * FROM kv_sa EXCEPT ALL SELECT * FROM kv_ta)
                              UNION ALL (SELECT * FROM kv_ta EXCEPT ALL SELECT * FROM kv_sa)) x;""")
    check(diff == "0", "socket and TCP tables differ in %s rows" % diff)
    check(s.value("SELECT v FROM kv_sa WHERE key = 'k7';") == s.value("SELECT md5('7');"),
          "key lookup through the socket")
    check(s.value("SELECT target FROM pgpoly.connections() WHERE server = 'sa';") == sock_a,
          "pgpoly.connections() does not show the socket path as the target")
    s.value("ALTER USER MAPPING FOR CURRENT_USER SERVER sa OPTIONS (SET password 'wrong-pw');")
    expect("SELECT count(*) FROM kv_sa;", "08001", "wrong password over the socket",
           present=(sock_a,), absent=("wrong-pw",))
    s.value("ALTER USER MAPPING FOR CURRENT_USER SERVER sa OPTIONS (SET password '%s');" % PW)
    check(s.value("SELECT count(*) FROM kv_sa;") == "300", "right password again")

    # --- the trust rule, socket and TCP alike -----------------------------
    s.value("SET ROLE %s;" % ROLE)
    s.value("""
        CREATE SERVER r_sock_b FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (unix_socket '%s');
        CREATE SERVER r_tcp_b FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d');
        CREATE SERVER r_sock_a FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (unix_socket '%s');
        CREATE FOREIGN TABLE r_sock_b_t (key text OPTIONS (key 'true'), v text)
            SERVER r_sock_b OPTIONS (table_type 'string', key_prefix 'us:');
        CREATE FOREIGN TABLE r_tcp_b_t (key text OPTIONS (key 'true'), v text)
            SERVER r_tcp_b OPTIONS (table_type 'string', key_prefix 'us:');
        CREATE FOREIGN TABLE r_sock_a_t (key text OPTIONS (key 'true'), v text)
            SERVER r_sock_a OPTIONS (table_type 'string', key_prefix 'us:');
    """ % (sock_b, port_b, sock_a))
    names = [("r_sock_b", "SERVER"), ("r_tcp_b", "SERVER"),
             (sock_b, "ADDR"), ("127.0.0.1:%d" % port_b, "ADDR")]
    for setup, state, what in (
            ("", "2F003", "no user mapping"),
            ("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (password 'made-up');",
             "2F003", "a made-up password for a Redis that asks for none")):
        errs = []
        for srv in ("r_sock_b", "r_tcp_b"):
            if setup:
                s.value(setup % srv)
            r = expect("SELECT * FROM %s_t;" % srv, state,
                       "non-superuser, %s, %s" % (what, srv), absent=("made-up",))
            errs.append(normalized(r.err, names))
        check(errs[0] == errs[1], "non-superuser, %s: the socket's error differs "
              "from TCP's:\n%s\n---\n%s" % (what, errs[0], errs[1]))
    s.value("CREATE USER MAPPING FOR CURRENT_USER SERVER r_sock_a OPTIONS (password '%s');" % PW)
    r = s.run("SELECT v FROM r_sock_a_t WHERE key = 'k9';")
    check(r.rc == 0 and r.out.strip() == s.value("SELECT md5('9');"),
          "non-superuser with the right password over the socket: %s %s" % (r.out, r.err))
    s.value("ALTER USER MAPPING FOR CURRENT_USER SERVER r_sock_a OPTIONS (SET password 'bad');")
    expect("SELECT * FROM r_sock_a_t;", "08001", "non-superuser, wrong password", absent=("'bad'",))
    s.value("RESET ROLE;")

    # --- paths that lead to no Redis --------------------------------------
    plain = os.path.join(d, "plain")
    open(plain, "w").close()
    os.chmod(plain, 0o666)
    denied = os.path.join(d, "denied.sock")
    ls_denied = socket.socket(socket.AF_UNIX)
    ls_denied.bind(denied)
    ls_denied.listen(4)
    os.chmod(denied, 0)
    deaf = os.path.join(d, "deaf.sock")
    ls_deaf = socket.socket(socket.AF_UNIX)
    ls_deaf.bind(deaf)
    os.chmod(deaf, 0o777)
    s.value("""CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis
                   OPTIONS (unix_socket '/x', connect_timeout_ms '2000');
               CREATE FOREIGN TABLE bad_t (key text OPTIONS (key 'true'), v text)
                   SERVER bad OPTIONS (table_type 'string');""")
    for path, why in ((os.path.join(d, "missing.sock"), "does not exist"),
                      (os.path.join(d, "missing", "r.sock"), "does not exist"),
                      (plain, "is not a socket"),
                      (denied, "permission denied for unix_socket"),
                      (deaf, "Connection refused")):
        s.value("ALTER SERVER bad OPTIONS (SET unix_socket '%s');" % path)
        expect("SELECT * FROM bad_t WHERE key = 'a';", "08001", path,
               present=('unix_socket "%s"' % path, why, '"bad"'))
    # a role that may not read server files learns nothing about the path
    s.value("SET ROLE %s;" % ROLE)
    s.value("""CREATE SERVER bad_r FOREIGN DATA WRAPPER pgpoly_redis
                   OPTIONS (unix_socket '/x', connect_timeout_ms '2000');
               CREATE USER MAPPING FOR CURRENT_USER SERVER bad_r OPTIONS (password 'pw');
               CREATE FOREIGN TABLE bad_r_t (key text OPTIONS (key 'true'), v text)
                   SERVER bad_r OPTIONS (table_type 'string');""")
    for path, why in ((os.path.join(d, "missing.sock"), "does not exist"),
                      (plain, "is not a socket"),
                      (denied, "ermission denied"),
                      (deaf, "Connection refused")):
        s.value("ALTER SERVER bad_r OPTIONS (SET unix_socket '%s');" % path)
        expect("SELECT * FROM bad_r_t WHERE key = 'a';", "08001", "non-superuser, " + path,
               present=('through unix_socket "%s"' % path, "pg_read_server_files"),
               absent=(why, "No such file", "not a socket", "refused"))
    s.value("RESET ROLE;")
    ls_denied.close()
    ls_deaf.close()

    # --- a paused Redis: statement_timeout cancels the wait ----------------
    # (timeout_ms is 3 s: a wait that ignored the cancel would end in 08006)
    pgtest.kill_redis(port_a, signal.SIGSTOP)
    try:
        r = s.run("SET statement_timeout = '1s'; SELECT count(*) FROM kv_sa; "
                  "RESET statement_timeout;", timeout=30)
        check(r.sqlstate == "57014", "paused Redis over the socket: want 57014, "
              "got rc=%s %s: %s" % (r.rc, r.sqlstate, r.err.strip()))
    finally:
        pgtest.kill_redis(port_a, signal.SIGCONT)
    s.value("RESET statement_timeout;")
    check(s.value("SELECT count(*) FROM kv_sa;") == "300", "after the pause")

    # --- Redis killed and restarted behind a cached socket connection -----
    pgtest.kill_redis(port_a, signal.SIGKILL)
    expect("SELECT count(*) FROM kv_sa;", "08", "Redis A gone", present=(sock_a,))
    start(sock_a, PW, port=port_a)
    pgtest.redis_cli(port_a, "-a", PW, "--no-auth-warning", "set", "us:back", "yes")
    r = s.run("SELECT v FROM kv_sa WHERE key = 'back';")
    check(r.rc == 0 and r.out.strip() == "yes",
          "after Redis restarted: rc=%s %r %s" % (r.rc, r.out, r.err))
    s.close()


if __name__ == "__main__":
    pgtest.main(test)
