"""Jepsen-style invariants: concurrent clients, random faults, checked histories.

CLIENTS threads (separate protocol connections, pgwire) run randomized
transactions for SECONDS against a private Redis and a private
Elasticsearch stand-in, while a chaos thread cancels statements
(pg_cancel_backend), terminates backends (pg_terminate_backend, preferring
ones inside COMMIT, and the sync worker) and pauses Redis for a moment
(SIGSTOP/SIGCONT, so that COMMITs are caught waiting on it).  Transactions also end in random
ROLLBACKs, ROLLBACK TO SAVEPOINT, statement_timeout, Redis WATCH conflicts
(40001), SERIALIZABLE conflicts and PREPARE TRANSACTION / COMMIT PREPARED /
ROLLBACK PREPARED.  Every transaction records its outcome as the client saw
it: ok (COMMIT succeeded), aborted (ROLLBACK, an error before COMMIT, a
refused PREPARE, ROLLBACK PREPARED), or unknown (the connection died inside
COMMIT, or COMMIT failed with an error that says the store may have applied
the writes: README, Limitations).  A cancel is held once a COMMIT has sent
writes, so no COMMIT cancelled with 57014 may be unknown; one cancelled
before sending counts as aborted (its writes are checked absent).  Then,
after the run:

  * bank (write_mode 'transactional' hash): transfers between accounts,
    each writing a Redis marker txlog:<id> and a native ledger row in the
    same transaction.  The total is constant; each balance is the initial
    one plus the transfers whose marker Redis holds (no partial MULTI);
    every ok transfer is in Redis and in the ledger, no aborted one is in
    either, and Redis and the ledger differ only by unknown ones;
  * bulk: transactions of 20 to 300 rows with a small
    pgpoly.redis_stream_threshold (streamed on a second connection), some
    with a streamed savepoint rolled back: all of a transaction's keys or
    none are in Redis, as its ledger row says;
  * immediate (write_mode 'immediate'): every INSERT statement that
    succeeded is in Redis, whatever the transaction did afterwards (README:
    immediate writes are not undone by ROLLBACK), and nothing else is;
  * Elasticsearch (transactional): documents and their native ledger rows
    agree as for the bank; a counter updated with OCC equals the count of
    committed increments (no lost update), give or take unknown ones;
  * sync (native table -> Redis, with PREPARE/COMMIT PREPARED) and an
    outbox table with a native shadow written in the same transaction:
    after sync_wait the target equals the source exactly;
  * feature store: per entity, Redis and get_online_features hold the
    newest committed write (event_time, then created_at, of the offline
    history), never an older one nor a rolled-back one, for a
    transactional and an outbox online table;
  * PREPARE TRANSACTION is refused (0A000) with buffered Redis, outbox or
    Elasticsearch writes, and allowed for sync sources and immediate
    writes, finished by COMMIT PREPARED or ROLLBACK PREPARED.

PGPOLY_JEPSEN_SEED sets the seed (printed), PGPOLY_JEPSEN_SECONDS the length
of the run (default 10 s), PGPOLY_JEPSEN_CLIENTS the clients (default 6).
"""

import json
import os
import random
import signal
import socket
import threading
import time

import es_helper
import pgtest
import pgwire

check = pgtest.check
SEED = int(os.environ.get("PGPOLY_JEPSEN_SEED") or 20261203)
SECONDS = float(os.environ.get("PGPOLY_JEPSEN_SECONDS") or 10)
CLIENTS = int(os.environ.get("PGPOLY_JEPSEN_CLIENTS") or 6)
ACCOUNTS = 6
INITIAL = 1000
ENTITIES = 5
SYNC_KEYS = 12
OB_KEYS = 8

SETUP = """
CREATE SERVER jr FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port '%(rport)d', timeout_ms '4000');
CREATE USER MAPPING FOR CURRENT_USER SERVER jr;
CREATE FOREIGN TABLE bank (k text OPTIONS (key 'true'), bal int)
  SERVER jr OPTIONS (key_prefix 'bank:');
CREATE FOREIGN TABLE txlog (k text OPTIONS (key 'true'), src text, dst text, amt int)
  SERVER jr OPTIONS (key_prefix 'txlog:');
CREATE TABLE ledger (id bigint PRIMARY KEY, src text, dst text, amt int);
CREATE FOREIGN TABLE blk (k text OPTIONS (key 'true'), tx bigint, pad text)
  SERVER jr OPTIONS (key_prefix 'blk:');
CREATE TABLE blkledger (id bigint PRIMARY KEY, n int);
CREATE FOREIGN TABLE imm (k text OPTIONS (key 'true'), v int)
  SERVER jr OPTIONS (key_prefix 'imm:', write_mode 'immediate');
CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL, n int);
CREATE FOREIGN TABLE kv_redis (k text OPTIONS (key 'true'), v text, n int)
  SERVER jr OPTIONS (key_prefix 'kv:');
SELECT pgpoly.create_sync('kv', 'kv', 'kv_redis');
CREATE FOREIGN TABLE ob (k text OPTIONS (key 'true'), v text)
  SERVER jr OPTIONS (key_prefix 'ob:', write_mode 'outbox');
CREATE TABLE ob_shadow (k text PRIMARY KEY, v text NOT NULL);
CREATE FOREIGN TABLE fs (user_id text OPTIONS (key 'true'), clicks int,
                         _event_time timestamptz)
  SERVER jr OPTIONS (key_prefix 'fs:');
SELECT pgpoly.create_feature_view('fs', 'user_id', 'fs');
CREATE FOREIGN TABLE fso (user_id text OPTIONS (key 'true'), clicks int,
                          _event_time timestamptz)
  SERVER jr OPTIONS (key_prefix 'fso:', write_mode 'outbox');
SELECT pgpoly.create_feature_view('fso', 'user_id', 'fso');
CREATE SERVER je FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%(es)s');
CREATE FOREIGN TABLE esdocs (_id text, n int, tx bigint) SERVER je OPTIONS (index 'jdocs');
CREATE TABLE esledger (id bigint PRIMARY KEY);
CREATE TABLE ctrlog (id bigint PRIMARY KEY, incs int NOT NULL);
INSERT INTO bank SELECT 'a' || i, %(initial)d FROM generate_series(1, %(accounts)d) i;
INSERT INTO esdocs VALUES ('ctr', 0, 0);
"""


class Dead(Exception):
    """The client's connection died."""


class Client:
    """One client: a protocol connection and its backend pid."""

    pids = {}  # cid -> backend pid, read by the chaos thread

    def __init__(self, db, cid):
        self.db, self.cid = db, cid
        self.conn = None
        self.connect()

    def connect(self):
        if self.conn is not None:
            try:
                self.conn.sock.close()
            except OSError:
                pass
        for _ in range(50):
            try:
                self.conn = pgwire.Conn(self.db, timeout=60)
                ok, _, _, rows = self.run("SELECT pg_backend_pid()")
            except (Dead, ConnectionError, OSError):
                time.sleep(0.05)
                continue
            if ok:
                break
        self.pid = int(rows[0][0])
        Client.pids[self.cid] = self.pid

    def run(self, sql):
        """(ok, sqlstate, error fields, rows) of sql; raises Dead."""
        try:
            rs = self.conn.query(sql)
        except (ConnectionError, OSError, socket.timeout) as e:
            raise Dead(str(e))
        for r in rs:
            if r.error:
                return False, r.error.get("C"), r.error, []
        return True, None, None, (rs[-1].rows if rs else [])


def commit_unknown(err):
    """A failed COMMIT whose error says the store may hold its writes.  A
    Redis WATCH conflict aborted the EXEC: nothing of it was applied."""
    text = " ".join(str(err.get(f, "")) for f in "MDHW")
    if err.get("C") == "40001" and "could not serialize the writes" in err.get("M", ""):
        return False
    return (err.get("C") == "40001" and "could not serialize access" in text) or \
        "may still apply" in text or "already sent" in text or "stay applied" in text


class History:
    """Outcomes per workload: ok / aborted / unknown transaction ids."""

    def __init__(self):
        self.lock = threading.Lock()
        self.data = {}
        self.notes = []
        self.unknown_why = {}

    def add(self, workload, outcome, tid):
        with self.lock:
            self.data.setdefault(workload, {"ok": set(), "aborted": set(),
                                            "unknown": set()})[outcome].add(tid)

    def get(self, workload, outcome):
        return self.data.get(workload, {}).get(outcome, set())


def transaction(cl, stmts, end, iso=None):
    """Run BEGIN, stmts, end on client cl.  Returns (outcome, error):
    ok, aborted (an error before the end, ROLLBACK) or unknown / failed for
    an end that did not succeed."""
    in_end = False
    try:
        ok, st, err, _ = cl.run("BEGIN" + (" ISOLATION LEVEL " + iso if iso else ""))
        if not ok:
            cl.run("ROLLBACK")
            return "aborted", err
        for s in stmts:
            ok, st, err, _ = cl.run(s)
            if not ok:
                cl.run("ROLLBACK")
                return "aborted", err
        if end == "ROLLBACK":
            cl.run("ROLLBACK")
            return "aborted", None
        in_end = True
        ok, st, err, _ = cl.run(end)
        if ok:
            return "ok", None
        return ("unknown" if commit_unknown(err) else "failed"), err
    except Dead:
        cl.connect()
        return ("unknown" if in_end else "aborted"), None


class Worker(threading.Thread):
    def __init__(self, db, cid, hist, stop, prepared_slots):
        super().__init__(daemon=True)
        self.db, self.cid, self.hist, self.stop = db, cid, hist, stop
        self.rnd = random.Random(SEED * 1000 + cid)
        self.n = 0
        self.slots = prepared_slots
        self.errors = []
        self.immediate_sent = set()
        self.counts = {}

    def tid(self):
        self.n += 1
        return self.cid * 1000000 + self.n

    def end(self):
        r = self.rnd.random()
        return "ROLLBACK" if r < 0.15 else "COMMIT"

    def record(self, workload, tid, outcome, err):
        self.counts[(workload, outcome)] = self.counts.get((workload, outcome), 0) + 1
        if outcome == "failed":
            # a COMMIT that failed without saying the store may hold its
            # writes: nothing of it may be in the store (checked later)
            self.hist.add(workload, "aborted", tid)
            self.hist.add(workload + "_failed", "aborted", tid)
            with self.hist.lock:
                self.hist.notes.append((workload, tid, err))
        else:
            self.hist.add(workload, outcome, tid)
            if outcome == "unknown":
                with self.hist.lock:
                    self.hist.unknown_why[tid] = (
                        "connection lost in COMMIT" if err is None else
                        "%s %s | %s" % (err.get("C"), err.get("M"), err.get("W", "")[:200]))

    def run(self):
        try:
            self.cl = Client(self.db, self.cid)
            while not self.stop.is_set():
                w = self.rnd.choice(["bank", "bank", "imm", "es", "sync", "sync",
                                     "ob", "fs", "fs", "prep", "blk"])
                getattr(self, "w_" + w)()
        except Exception as e:  # noqa: BLE001 -- reported by the test
            import traceback
            self.errors.append(traceback.format_exc())

    def maybe_timeout(self):
        return (["SET LOCAL statement_timeout = '%dms'" % self.rnd.choice((5, 30, 200))]
                if self.rnd.random() < 0.1 else [])

    # --- bank: transfers between Redis hash fields ------------------------
    def transfer(self, tid):
        a, b = self.rnd.sample(range(1, ACCOUNTS + 1), 2)
        amt = self.rnd.randint(1, 50)
        return ["UPDATE bank SET bal = bal - %d WHERE k = 'a%d'" % (amt, a),
                "UPDATE bank SET bal = bal + %d WHERE k = 'a%d'" % (amt, b),
                "INSERT INTO txlog VALUES ('%d', 'a%d', 'a%d', %d)" % (tid, a, b, amt),
                "INSERT INTO ledger VALUES (%d, 'a%d', 'a%d', %d)" % (tid, a, b, amt)]

    def w_bank(self):
        tid = self.tid()
        stmts = self.maybe_timeout()
        iso = None
        r = self.rnd.random()
        if r < 0.15:
            # a transfer rolled back to a savepoint: it must vanish
            dead = self.tid()
            stmts += ["SAVEPOINT s"] + self.transfer(dead) + ["ROLLBACK TO SAVEPOINT s"]
            self.hist.add("bank", "aborted", dead)
        elif r < 0.25:
            iso = "SERIALIZABLE"
            stmts += ["SELECT count(*) FROM ledger WHERE amt > %d" % self.rnd.randint(1, 50)]
        elif r < 0.35:
            stmts += ["SELECT bal FROM bank WHERE k IN ('a1', 'a2') FOR UPDATE"]
        stmts += self.transfer(tid)
        if self.rnd.random() < 0.3:
            stmts += ["SELECT pg_sleep(0.0%d)" % self.rnd.randint(1, 5)]
        end = self.end()
        outcome, err = transaction(self.cl, stmts, end, iso)
        self.record("bank", tid, outcome, err)

    # --- bulk: large transactions, streamed past the threshold ---------------
    def blk_insert(self, tid, n):
        return ("INSERT INTO blk SELECT '%d:' || i, %d, repeat('x', 40) "
                "FROM generate_series(1, %d) i" % (tid, tid, n))

    def w_blk(self):
        tid = self.tid()
        n = self.rnd.randint(20, 300)
        stmts = ["SET LOCAL pgpoly.redis_stream_threshold = '%dkB'" % self.rnd.choice((1, 4, 16))]
        if self.rnd.random() < 0.3:
            dead = self.tid()
            stmts += ["SAVEPOINT s", self.blk_insert(dead, self.rnd.randint(20, 300)),
                      "ROLLBACK TO SAVEPOINT s"]
            self.hist.add("blk", "aborted", dead)
        if self.rnd.random() < 0.2:
            stmts += ["UPDATE bank SET bal = bal WHERE k = 'a%d'" % self.rnd.randint(1, ACCOUNTS)]
        stmts += [self.blk_insert(tid, n), "INSERT INTO blkledger VALUES (%d, %d)" % (tid, n)]
        if self.rnd.random() < 0.3:
            stmts += ["SELECT pg_sleep(0.02)"]
        outcome, err = transaction(self.cl, stmts, self.end())
        self.record("blk", tid, outcome, err)

    # --- immediate: every INSERT that returned is written ------------------
    def w_imm(self):
        try:
            self.cl.run("BEGIN")
            for _ in range(self.rnd.randint(1, 3)):
                tid = self.tid()
                sp = self.rnd.random() < 0.3
                if sp:
                    self.cl.run("SAVEPOINT s")
                try:
                    ok, st, err, _ = self.cl.run("INSERT INTO imm VALUES ('%d', 1)" % tid)
                except Dead:
                    # terminated while the INSERT ran: Redis may hold its key
                    self.hist.add("imm", "unknown", tid)
                    raise
                if ok:
                    self.immediate_sent.add(tid)
                    self.hist.add("imm", "ok", tid)
                else:
                    self.hist.add("imm", "unknown", tid)
                    break
                if sp and self.rnd.random() < 0.5:
                    self.cl.run("ROLLBACK TO SAVEPOINT s")
            self.cl.run(self.end())
        except Dead:
            self.cl.connect()

    # --- Elasticsearch: documents and an OCC counter ------------------------
    def w_es(self):
        tid = self.tid()
        stmts = self.maybe_timeout()
        stmts += ["INSERT INTO esdocs VALUES ('d%d', 1, %d)" % (tid, tid),
                  "INSERT INTO esledger VALUES (%d)" % tid]
        if self.rnd.random() < 0.2:
            # an increment rolled back to a savepoint: it must not count,
            # nor break the version the later increments are sent with
            stmts += ["SAVEPOINT s", "UPDATE esdocs SET n = n + 1 WHERE _id = 'ctr'",
                      "ROLLBACK TO SAVEPOINT s"]
        if self.rnd.random() < 0.5:
            incs = self.rnd.randint(1, 2)
            stmts += ["UPDATE esdocs SET n = n + 1 WHERE _id = 'ctr'"] * incs
            stmts += ["INSERT INTO ctrlog VALUES (%d, %d)" % (tid, incs)]
        outcome, err = transaction(self.cl, stmts, self.end())
        self.record("es", tid, outcome, err)

    # --- sync: native source, Redis target ----------------------------------
    def kv_ops(self, tid):
        out = []
        for _ in range(self.rnd.randint(1, 4)):
            k = self.rnd.randrange(SYNC_KEYS)
            r = self.rnd.random()
            if r < 0.4:
                out.append("INSERT INTO kv VALUES (%d, 'i%d', %d) ON CONFLICT (k) DO UPDATE "
                           "SET v = excluded.v, n = excluded.n" % (k, tid, tid % 1000))
            elif r < 0.65:
                out.append("UPDATE kv SET v = 'u%d', n = n + 1 WHERE k = %d" % (tid, k))
            elif r < 0.84:
                out.append("DELETE FROM kv WHERE k = %d" % k)
            elif r < 0.85:
                out.append("TRUNCATE kv")
            else:
                out.append("UPDATE kv SET k = %d WHERE k = %d"
                           % (self.rnd.randrange(SYNC_KEYS), k))
        return out

    def w_sync(self):
        tid = self.tid()
        stmts = self.maybe_timeout()
        if self.rnd.random() < 0.3:
            stmts += ["SAVEPOINT s"] + self.kv_ops(tid) + ["ROLLBACK TO SAVEPOINT s"]
        stmts += self.kv_ops(tid)
        outcome, err = transaction(self.cl, stmts, self.end())
        self.record("sync", tid, outcome, err)

    # --- outbox table with a native shadow ----------------------------------
    def w_ob(self):
        tid = self.tid()
        stmts = []
        for _ in range(self.rnd.randint(1, 3)):
            k = self.rnd.randrange(OB_KEYS)
            pair = ["INSERT INTO ob VALUES ('k%d', 'v%d')" % (k, tid),
                    "INSERT INTO ob_shadow VALUES ('k%d', 'v%d') ON CONFLICT (k) "
                    "DO UPDATE SET v = excluded.v" % (k, tid)]
            self.rnd.shuffle(pair)
            stmts += pair
            r = self.rnd.random()
            if r < 0.3:
                # the row this transaction wrote: both tables see it
                stmts += ["UPDATE ob SET v = 'w%d' WHERE k = 'k%d'" % (tid, k),
                          "UPDATE ob_shadow SET v = 'w%d' WHERE k = 'k%d'" % (tid, k)]
            elif r < 0.5:
                stmts += ["DELETE FROM ob WHERE k = 'k%d'" % k,
                          "DELETE FROM ob_shadow WHERE k = 'k%d'" % k]
        outcome, err = transaction(self.cl, stmts, self.end())
        self.record("ob", tid, outcome, err)

    # --- feature store ------------------------------------------------------
    def put(self, tid, entity, view="fs"):
        return ("SELECT pgpoly.put_features('%s', 'e%d', '{\"clicks\": %d}', "
                "event_time => '2024-01-01 00:00+00'::timestamptz + %d * interval '1 minute')"
                % (view, entity, tid, self.rnd.randint(0, 40)))

    def w_fs(self):
        view = self.rnd.choice(["fs", "fso"])
        tid = self.tid()
        stmts = self.maybe_timeout()
        r = self.rnd.random()
        ents = self.rnd.sample(range(ENTITIES), self.rnd.randint(1, 2))
        if r < 0.15:
            dead = self.tid()
            stmts += ["SAVEPOINT s", self.put(dead, ents[0], view), "ROLLBACK TO SAVEPOINT s"]
            self.hist.add(view, "aborted", dead)
        if r > 0.85:
            stmts.append(
                "SELECT pgpoly.ingest_features('%s', $q$SELECT 'e' || e AS user_id, "
                "'2024-01-01 00:00+00'::timestamptz + m * interval '1 minute' AS event_time, "
                "%d AS clicks FROM (VALUES %s) v(e, m)$q$)"
                % (view, tid, ", ".join("(%d, %d)" % (e, self.rnd.randint(0, 40)) for e in ents)))
        else:
            stmts += [self.put(tid, e, view) for e in ents]
        if self.rnd.random() < 0.3:
            stmts.append("SELECT count(*) FROM pgpoly.get_online_features('%s', "
                         "'{e0,e1,e2,e3,e4}')" % view)
        outcome, err = transaction(self.cl, stmts, self.end())
        self.record(view, tid, outcome, err)

    # --- two-phase commit ---------------------------------------------------
    def w_prep(self):
        kind = self.rnd.choice(["sync", "bank", "ob", "fs", "imm", "es"])
        tid = self.tid()
        gid = "jepsen_%d" % tid
        if kind == "sync":
            stmts = self.kv_ops(tid)
        elif kind == "bank":
            stmts = self.transfer(tid)
        elif kind == "ob":
            stmts = ["INSERT INTO ob VALUES ('k%d', 'v%d')" % (tid % OB_KEYS, tid),
                     "INSERT INTO ob_shadow VALUES ('k%d', 'v%d') ON CONFLICT (k) "
                     "DO UPDATE SET v = excluded.v" % (tid % OB_KEYS, tid)]
        elif kind == "fs":
            stmts = [self.put(tid, tid % ENTITIES)]
        elif kind == "es":
            stmts = ["INSERT INTO esdocs VALUES ('d%d', 1, %d)" % (tid, tid),
                     "INSERT INTO esledger VALUES (%d)" % tid]
        else:
            stmts = ["INSERT INTO imm VALUES ('%d', 1)" % tid]
        if not self.slots.acquire(timeout=1):
            return
        try:
            outcome, err = transaction(self.cl, stmts, "PREPARE TRANSACTION '%s'" % gid)
            if kind == "imm":
                # sent at once, whether or not the PREPARE succeeds
                self.hist.add("imm", "unknown", tid)
            if outcome == "failed" and err.get("C") == "53200":
                outcome = "aborted"   # a prepared transaction left by a dead client
            if outcome == "unknown":
                # the backend died in PREPARE: finish the transaction if it
                # was prepared (it holds its locks until then)
                try:
                    ok, _, _, rows = self.cl.run("SELECT count(*) FROM pg_prepared_xacts "
                                                 "WHERE gid = '%s'" % gid)
                except Dead:
                    self.cl.connect()
                    ok, rows = False, []
                if ok and rows[0][0] == b"1" and kind not in ("bank", "ob", "es"):
                    outcome = "ok"
                elif ok and rows[0][0] == b"0":
                    outcome = "aborted"
            if kind == "fs" and outcome == "ok":
                pass   # a put that lost to a newer online value buffers nothing
            elif kind in ("bank", "ob", "fs", "es"):
                # buffered writes: PREPARE must be refused, nothing kept
                if outcome == "ok":
                    self.errors.append("PREPARE TRANSACTION of %s writes succeeded" % kind)
                    self.record(kind, tid, "unknown", err)
                    return
                if outcome == "failed":
                    # refused (0A000), or interrupted by the chaos thread
                    if err.get("C") not in ("0A000", "57014"):
                        self.errors.append("PREPARE of %s failed with %s: %s"
                                           % (kind, err.get("C"), err.get("M")))
                    outcome = "aborted"
                self.record(kind, tid, outcome if outcome != "unknown" else "aborted", None)
                return
            if outcome != "ok":
                self.record(kind, tid, "aborted" if outcome != "unknown" else "unknown", err)
                return
            fin = self.rnd.choice(["COMMIT PREPARED", "ROLLBACK PREPARED"])
            ok = False
            for _ in range(3):
                # a prepared transaction holds its locks: finish it even
                # after a cancel or a terminated backend
                try:
                    ok, st, e2, _ = self.cl.run("%s '%s'" % (fin, gid))
                except Dead:
                    self.cl.connect()
                    continue
                if ok or st != "57014":
                    break
            if not ok:
                # left to the end of the test (finished there)
                self.hist.add("prep_left", "unknown", gid)
            if kind != "imm":
                self.record(kind, tid, "ok" if ok and fin == "COMMIT PREPARED"
                            else "aborted" if ok else "unknown", None)
        finally:
            self.slots.release()


def chaos(db, rport, stop, rnd, stats):
    """Cancel, terminate, and pause Redis at random moments."""
    c = pgwire.Conn(db, timeout=60)

    def in_commit(pids):
        return c.query("SELECT pid FROM pg_stat_activity WHERE pid IN (%s) AND "
                       "state = 'active' AND query ILIKE 'COMMIT%%'"
                       % ",".join(map(str, pids)))[0].rows

    while not stop.is_set():
        time.sleep(rnd.uniform(0.02, 0.15))
        pids = list(Client.pids.values())
        if not pids:
            continue
        r = rnd.random()
        if r < 0.35:
            c.query("SELECT pg_cancel_backend(%d)" % rnd.choice(pids))
            stats["cancel"] += 1
        elif r < 0.55:
            rows = in_commit(pids)
            if rows:
                c.query("SELECT pg_terminate_backend(%s)" % rows[0][0].decode())
                stats["terminate_commit"] += 1
        elif r < 0.6:
            c.query("SELECT pg_terminate_backend(%d)" % rnd.choice(pids))
            stats["terminate"] += 1
        elif r < 0.63:
            c.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                    "backend_type = 'pgpoly sync worker' AND datname = current_database()")
            stats["terminate_worker"] += 1
        elif r < 0.75:
            # pause Redis so that COMMITs wait on it, then hit one
            pgtest.kill_redis(rport, signal.SIGSTOP)
            try:
                end = time.monotonic() + rnd.uniform(0.1, 0.5)
                rows = []
                while not rows and time.monotonic() < end:
                    time.sleep(0.01)
                    rows = in_commit(pids)
                if rows:
                    fn = rnd.choice(["pg_terminate_backend", "pg_cancel_backend"])
                    c.query("SELECT %s(%s)" % (fn, rows[0][0].decode()))
                    stats["paused_" + fn] += 1
            finally:
                pgtest.kill_redis(rport, signal.SIGCONT)
            stats["pause"] += 1
    c.close()


def redis_keys(rport, prefix):
    """Every key under prefix (SCAN)."""
    keys = []
    cursor = "0"
    while True:
        rep = pgtest.redis_pipeline(rport, [["SCAN", cursor, "MATCH", prefix + "*",
                                             "COUNT", "10000"]])[0]
        cursor, batch = rep
        keys += batch
        if cursor == "0":
            return keys


def redis_hash_all(rport, prefix, field_names):
    """{key suffix: {field: value}} of every hash under prefix."""
    keys = redis_keys(rport, prefix)
    reps = []
    for i in range(0, len(keys), 500):
        reps += pgtest.redis_pipeline(rport, [["HGETALL", k] for k in keys[i:i + 500]])
    out = {}
    for k, r in zip(keys, reps):
        out[k[len(prefix):]] = dict(zip(r[::2], r[1::2]))
    return out


def test():
    print("seed %d, %s s, %d clients" % (SEED, SECONDS, CLIENTS), flush=True)
    mark = pgtest.pg_log_mark()
    rport = pgtest.start_redis()
    es = es_helper.Standin()
    es.request("PUT", "/jdocs", {"mappings": {"properties": {
        "n": {"type": "long"}, "tx": {"type": "long"}}}})
    db = pgtest.create_db("pgpoly_jepsen")
    r = pgtest.psql(SETUP % {"rport": rport, "es": es.url, "initial": INITIAL,
                             "accounts": ACCOUNTS}, db=db, timeout=120)
    if not check(r.rc == 0, "set-up failed: %s" % r.err):
        return
    hist = History()
    stop = threading.Event()
    slots = threading.Semaphore(2)   # max_prepared_transactions = 2
    workers = [Worker(db, cid + 1, hist, stop, slots) for cid in range(CLIENTS)]
    stats = {k: 0 for k in ("cancel", "terminate", "terminate_commit", "pause", "terminate_worker",
                            "paused_pg_terminate_backend", "paused_pg_cancel_backend")}
    ch = threading.Thread(target=chaos, args=(db, rport, stop, random.Random(SEED), stats),
                          daemon=True)
    for w in workers:
        w.start()
    ch.start()
    time.sleep(SECONDS)
    stop.set()
    t0 = time.monotonic()
    ch.join(60)
    for w in workers:
        w.join(120)
        check(not w.is_alive(), "client %d did not finish" % w.cid)
        check(not w.errors, "client %d: %s" % (w.cid, "\n".join(w.errors[:3])))
    pgtest.redis_cli(rport, "PING")   # resumed
    print("clients stopped in %.1f s" % (time.monotonic() - t0), flush=True)
    counts = {}
    for w in workers:
        for k, v in w.counts.items():
            counts[k] = counts.get(k, 0) + v
    print("chaos: %s" % stats)
    print("outcomes: %s" % sorted(counts.items()))

    # leftover prepared transactions (a client died between PREPARE and
    # its COMMIT/ROLLBACK PREPARED): commit them; their outcome was unknown
    left = pgtest.psql("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'jepsen_%%' "
                       "AND database = current_database()", db=db).out.split()
    for gid in left:
        pgtest.psql("COMMIT PREPARED '%s'" % gid, db=db)

    def q(sql):
        r = pgtest.psql(sql, db=db, timeout=120)
        check(r.rc == 0, "%s: %s" % (sql, r.err))
        return [l.split("|") for l in r.out.splitlines() if l]

    # --- bank ---------------------------------------------------------------
    bal = {k: int(v["bal"]) for k, v in redis_hash_all(rport, "bank:", None).items()}
    txlog = {int(k): v for k, v in redis_hash_all(rport, "txlog:", None).items()}
    ledger = {int(r[0]) for r in q("SELECT id FROM ledger")}
    check(sum(bal.values()) == INITIAL * ACCOUNTS,
          "bank: the total changed: %d, want %d (%s)" % (sum(bal.values()),
                                                         INITIAL * ACCOUNTS, bal))
    want = {"a%d" % i: INITIAL for i in range(1, ACCOUNTS + 1)}
    for t in txlog.values():
        want[t["src"]] -= int(t["amt"])
        want[t["dst"]] += int(t["amt"])
    check(bal == want, "bank: balances are not the transfers Redis holds: %s, want %s"
          % (bal, want))
    # A cancel is held once a COMMIT has sent writes (README): a cancelled
    # COMMIT sent nothing, so its outcome is never unknown.
    cancelled = {t: w for t, w in hist.unknown_why.items() if w.startswith("57014")}
    check(not cancelled, "COMMITs cancelled after sending writes (outcome "
          "unknown): %s" % list(cancelled.items())[:3])
    ok, ab, unk = hist.get("bank", "ok"), hist.get("bank", "aborted"), hist.get("bank", "unknown")
    check(ok <= set(txlog), "bank: committed transfers missing in Redis: %s"
          % sorted(ok - set(txlog))[:10])
    check(ok <= ledger, "bank: committed transfers missing in the ledger: %s"
          % sorted(ok - ledger)[:10])
    check(not (ab & set(txlog)), "bank: aborted transfers in Redis: %s"
          % [(t, notes_of(hist, t)) for t in sorted(ab & set(txlog))[:5]])
    check(not (ab & ledger), "bank: aborted transfers in the ledger: %s" % sorted(ab & ledger)[:10])
    check((set(txlog) ^ ledger) <= unk,
          "bank: Redis and the ledger differ beyond unknown outcomes: redis-only %s, "
          "ledger-only %s" % (sorted(set(txlog) - ledger - unk)[:10],
                              sorted(ledger - set(txlog) - unk)[:10]))
    print("bank: %d transfers in Redis, %d in the ledger, %d unknown"
          % (len(txlog), len(ledger), len(unk)))
    if os.environ.get("PGPOLY_JEPSEN_VERBOSE"):
        for t in sorted(set(txlog) - ledger):
            print("  redis-only transfer %d: %s" % (t, hist.unknown_why.get(t)))
        why = {}
        for t in unk:
            k = (hist.unknown_why.get(t) or "")[:60]
            why[k] = why.get(k, 0) + 1
        print("  unknown outcomes: %s" % why)

    # --- bulk: all or nothing -----------------------------------------------
    blk = {}
    for k in redis_keys(rport, "blk:"):
        t = int(k.split(":")[1])
        blk[t] = blk.get(t, 0) + 1
    bled = {int(r[0]): int(r[1]) for r in q("SELECT id, n FROM blkledger")}
    ok, ab, unk = hist.get("blk", "ok"), hist.get("blk", "aborted"), hist.get("blk", "unknown")
    check(ok <= set(blk) and ok <= set(bled), "bulk: committed transactions missing: %s / %s"
          % (sorted(ok - set(blk))[:10], sorted(ok - set(bled))[:10]))
    check(not (ab & set(blk)), "bulk: aborted transactions in Redis: %s"
          % [(t, blk[t], notes_of(hist, t)) for t in sorted(ab & set(blk))[:5]])
    check((set(blk) ^ set(bled)) <= unk, "bulk: Redis and the ledger differ beyond unknown "
          "outcomes: %s / %s" % (sorted(set(blk) - set(bled) - unk)[:10],
                                 sorted(set(bled) - set(blk) - unk)[:10]))
    part = {t: (blk[t], bled.get(t)) for t in blk if t in bled and blk[t] != bled[t]}
    check(not part, "bulk: transactions partly in Redis (keys, rows): %s" % list(part.items())[:5])
    print("bulk: %d transactions in Redis, %d in the ledger" % (len(blk), len(bled)))

    # --- immediate ----------------------------------------------------------
    imm = {int(k) for k in redis_hash_all(rport, "imm:", None)}
    sent = set().union(*[w.immediate_sent for w in workers])
    check(sent <= imm, "immediate: INSERTs that returned are not in Redis: %s"
          % sorted(sent - imm)[:10])
    check(imm <= sent | hist.get("imm", "unknown"),
          "immediate: keys no INSERT wrote: %s" % sorted(imm - sent)[:10])

    # --- Elasticsearch ------------------------------------------------------
    es.request("POST", "/jdocs/_refresh")
    docs = {r[0]: int(r[1]) for r in q("SELECT _id, n FROM esdocs")}
    esids = {int(d[1:]) for d in docs if d.startswith("d")}
    esled = {int(r[0]) for r in q("SELECT id FROM esledger")}
    ok, ab, unk = hist.get("es", "ok"), hist.get("es", "aborted"), hist.get("es", "unknown")
    check(ok <= esids and ok <= esled, "es: committed documents missing: %s / %s"
          % (sorted(ok - esids)[:10], sorted(ok - esled)[:10]))
    check(not (ab & esids), "es: aborted documents indexed: %s"
          % [(t, notes_of(hist, t)) for t in sorted(ab & esids)[:5]])
    check((esids ^ esled) <= unk, "es: index and ledger differ beyond unknown outcomes: "
          "%s / %s" % (sorted(esids - esled - unk)[:10], sorted(esled - esids - unk)[:10]))
    nctr = int(q("SELECT coalesce(sum(incs), 0) FROM ctrlog")[0][0])
    check(nctr <= docs.get("ctr", -1) <= nctr + 2 * len(unk),
          "es: counter %s, committed increments %d (+%d unknown)"
          % (docs.get("ctr"), nctr, len(unk)))

    # --- sync and outbox ----------------------------------------------------
    out = q("SELECT pgpoly.sync_wait('kv', '60 s'), pgpoly.sync_wait('public.ob', '60 s')")
    check(out and out[0][:2] == ["t", "t"], "sync_wait: %s" % out)
    print("synced after %.1f s" % (time.monotonic() - t0), flush=True)
    src = {r[0]: (r[1], r[2]) for r in q("SELECT k, v, n FROM kv")}
    tgt = {k: (v.get("v"), v.get("n")) for k, v in redis_hash_all(rport, "kv:", None).items()}
    check(src == tgt, "sync: the Redis target differs from the source:\n source %s\n target %s"
          % (sorted(src.items()), sorted(tgt.items())))
    shadow = {r[0]: r[1] for r in q("SELECT k, v FROM ob_shadow")}
    obr = {k: v.get("v") for k, v in redis_hash_all(rport, "ob:", None).items()}
    check(shadow == obr, "outbox: Redis differs from the shadow:\n shadow %s\n redis %s"
          % (sorted(shadow.items()), sorted(obr.items())))
    dl = q("SELECT name, key, op, error FROM pgpoly.sync_dead_letters")
    check(not dl, "dead letters: %s" % dl[:5])

    # --- feature store ------------------------------------------------------
    out = q("SELECT pgpoly.sync_wait('public.fso', '60 s')")
    check(out == [["t"]], "sync_wait fso: %s" % out)
    for view in ("fs", "fso"):
        check_features(q, hist, rport, view)

    failed = hist.notes
    if failed:
        print("note: %d COMMITs failed without a store-may-hold-writes context, e.g. %s"
              % (len(failed), [(w, t, e.get("C"), e.get("M")) for w, t, e in failed[:3]]))
    q("SELECT count(pgpoly.drop_sync(name)) FROM pgpoly.syncs")
    pgtest.check_pg_log(mark)


def check_features(q, hist, rport, view):
    """Per entity, Redis and get_online_features hold the newest committed
    write of the history (or one whose COMMIT outcome is unknown)."""
    newest = {r[0]: r[1] for r in q(
        "SELECT DISTINCT ON (entity) entity, clicks FROM pgpoly.%s_history "
        "ORDER BY entity, event_time DESC, created_at DESC" % view)}
    online = {k: v.get("clicks") for k, v in redis_hash_all(rport, view + ":", None).items()}
    served = {r[0]: json.loads(r[1]).get("clicks") if r[1] else None for r in q(
        "SELECT entity, features FROM pgpoly.get_online_features('%s', "
        "(SELECT array_agg(DISTINCT entity) FROM pgpoly.%s_history))" % (view, view))}
    hist_ids = {int(r[0]) for r in q("SELECT DISTINCT clicks FROM pgpoly.%s_history" % view)}
    ok, ab, unk = hist.get(view, "ok"), hist.get(view, "aborted"), hist.get(view, "unknown")
    check(ok <= hist_ids, "%s: committed puts missing in the history: %s"
          % (view, sorted(ok - hist_ids)[:10]))
    check(not (ab & hist_ids), "%s: aborted puts in the history: %s"
          % (view, sorted(ab & hist_ids)[:10]))
    for e in sorted(set(newest) | set(online)):
        o = online.get(e)
        if o != newest.get(e) and not (o is not None and int(o) in unk):
            check(False, "%s: entity %s online %s, newest committed %s%s"
                  % (view, e, o, newest.get(e), " (rolled back)" if o and int(o) in ab else ""))
        s = served.get(e)
        check(s is None and newest.get(e) is None
              or str(s) in (str(online.get(e)), str(newest.get(e))),
              "%s: get_online_features serves %s for %s, Redis holds %s"
              % (view, s, e, online.get(e)))


def notes_of(hist, tid):
    for w, t, e in hist.notes:
        if t == tid:
            return "COMMIT failed: %s %s %s" % (e.get("C"), e.get("M"), e.get("W"))
    return "client saw it abort"


if __name__ == "__main__":
    pgtest.main(test)
