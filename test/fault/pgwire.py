"""A minimal PostgreSQL frontend/backend protocol (v3) client, stdlib only.

psql 15 speaks only the simple query protocol, while drivers (JDBC, psycopg
3, libpq pipeline mode, pgbench -M extended/prepared) send Parse/Bind/
Execute messages, several statements before one Sync, and Execute with a
row limit that leaves a portal suspended.  The fault tests use this module
to drive the server the way those drivers do.

    c = pgwire.Conn(db)                # trust authentication, as the harness
    c.parse("s1", "SELECT $1::int")    # queue messages ...
    c.bind("p1", "s1", [b"42"])
    c.execute("p1", max_rows=0)
    c.sync()
    results = c.flush()                # ... send them, read until ReadyForQuery

flush() returns one Result per Execute (rows, command tag, suspended or
error) in order; an Execute skipped because an earlier message failed gets
a Result whose skipped is True.  c.status is the transaction status of the
last ReadyForQuery ('I', 'T' or 'E'); c.late_errors lists the errors that
came after every queued Execute had its result (a COMMIT failing at the
Sync of an implicit transaction: the pipeline's statements all completed,
and still nothing committed).  c.query(sql) runs simple-protocol SQL and
returns its Results.  Conn(db, options="-c DateStyle=SQL") passes session
settings in the startup packet, as drivers do.
"""

import os
import socket
import struct


class Result:
    """What one Execute (or simple-query statement) returned."""

    def __init__(self):
        self.rows = []          # lists of bytes (None for NULL)
        self.tag = None         # CommandComplete tag, e.g. "INSERT 0 1"
        self.suspended = False  # PortalSuspended: max_rows reached
        self.error = None       # dict of ErrorResponse fields (C: SQLSTATE)
        self.skipped = False    # not run: an earlier message failed

    def __repr__(self):
        return "Result(tag=%r, rows=%d, suspended=%r, error=%r, skipped=%r)" % (
            self.tag, len(self.rows), self.suspended,
            self.error and self.error.get("M"), self.skipped)


class Conn:
    """One protocol connection (PGHOST/PGPORT/PGUSER from the environment)."""

    def __init__(self, db=None, timeout=60, options=None):
        host = os.environ.get("PGHOST", "127.0.0.1")
        port = int(os.environ.get("PGPORT", "5432"))
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.out = []
        self.nexec = 0          # Executes queued since the last flush
        self.status = None
        self.late_errors = []
        params = b"user\0%s\0database\0%s\0" % (
            os.environ.get("PGUSER", "postgres").encode(),
            (db or os.environ.get("PGDATABASE", "postgres")).encode())
        if options:
            params += b"options\0%s\0" % options.encode()
        params += b"\0"
        body = struct.pack("!i", 196608) + params
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        self._read_until_ready([])

    # --- messages ---------------------------------------------------------

    def _msg(self, kind, body):
        self.out.append(kind + struct.pack("!i", len(body) + 4) + body)

    def parse(self, name, sql, param_oids=()):
        """Queue Parse of sql as statement name ("" = unnamed)."""
        self._msg(b"P", name.encode() + b"\0" + sql.encode() + b"\0" +
                  struct.pack("!h", len(param_oids)) +
                  b"".join(struct.pack("!i", o) for o in param_oids))

    def bind(self, portal, stmt, params=(), param_formats=(), result_formats=()):
        """Queue Bind: params are bytes (text or binary form) or None."""
        body = portal.encode() + b"\0" + stmt.encode() + b"\0"
        body += struct.pack("!h", len(param_formats))
        body += b"".join(struct.pack("!h", f) for f in param_formats)
        body += struct.pack("!h", len(params))
        for p in params:
            body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
        body += struct.pack("!h", len(result_formats))
        body += b"".join(struct.pack("!h", f) for f in result_formats)
        self._msg(b"B", body)

    def execute(self, portal, max_rows=0):
        """Queue Execute of portal, at most max_rows rows (0: all)."""
        self._msg(b"E", portal.encode() + b"\0" + struct.pack("!i", max_rows))
        self.nexec += 1

    def close_portal(self, portal):
        """Queue Close of a portal."""
        self._msg(b"C", b"P" + portal.encode() + b"\0")

    def sync(self):
        """Queue Sync: end of the implicit transaction (or pipeline)."""
        self._msg(b"S", b"")

    def flush(self):
        """Send the queued messages; read until ReadyForQuery.

        Returns one Result per queued Execute.
        """
        self.sock.sendall(b"".join(self.out))
        self.out = []
        results = [Result() for _ in range(self.nexec)]
        self.nexec = 0
        self.late_errors = []
        self._read_until_ready(results)
        return results

    def query(self, sql):
        """Run sql with the simple protocol; one Result per statement."""
        self.sock.sendall(b"Q" + struct.pack("!i", len(sql.encode()) + 5) +
                          sql.encode() + b"\0")
        results = []
        self._read_until_ready(results, grow=True)
        return results

    def close(self):
        """Terminate the session."""
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
        finally:
            self.sock.close()

    # --- replies ----------------------------------------------------------

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _next(self):
        kind = self._read(1)
        (length,) = struct.unpack("!i", self._read(4))
        return kind, self._read(length - 4)

    def _read_until_ready(self, results, grow=False):
        """Fill results (in order) until ReadyForQuery; grow: one per statement."""
        i = 0

        def cur():
            if grow and i == len(results):
                results.append(Result())
            return results[i] if i < len(results) else Result()

        while True:
            kind, body = self._next()
            if kind == b"D":
                (n,) = struct.unpack("!h", body[:2])
                pos, row = 2, []
                for _ in range(n):
                    (ln,) = struct.unpack("!i", body[pos:pos + 4])
                    pos += 4
                    row.append(None if ln < 0 else body[pos:pos + ln])
                    pos += max(ln, 0)
                cur().rows.append(row)
            elif kind == b"C":
                cur().tag = body.rstrip(b"\0").decode()
                i += 1
            elif kind == b"s":
                cur().suspended = True
                i += 1
            elif kind == b"I":  # EmptyQueryResponse
                i += 1
            elif kind == b"E":
                fields = {}
                for f in body.split(b"\0"):
                    if f:
                        fields[chr(f[0])] = f[1:].decode(errors="replace")
                if not grow and i >= len(results):
                    self.late_errors.append(fields)
                cur().error = fields
                i += 1
                for r in results[i:]:
                    r.skipped = True
            elif kind == b"Z":
                self.status = body.decode()
                return results
            elif kind == b"R":
                (code,) = struct.unpack("!i", body[:4])
                if code != 0:
                    raise RuntimeError("authentication %d not supported" % code)
            # ParseComplete, BindComplete, RowDescription, ParameterStatus,
            # BackendKeyData, NoticeResponse, CloseComplete: nothing to keep
