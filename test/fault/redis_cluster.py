#!/usr/bin/env python3
"""Real Redis Cluster and Sentinel set-ups on loopback, for tests and benchmarks.

The fault tests import it (next to pgtest.py); the benchmarks run it as a
command.  Every server is a real redis-server on 127.0.0.1 and free ports,
with its files in $PGPOLY_WORK/<name>-<port>, registered in $PGPOLY_PIDS so
the harness stops it even if the caller dies; stop() stops them at once.

    cl = redis_cluster.Cluster(primaries=3, replicas=1)   # started, state ok
    cl.ports                        all node ports
    cl.primaries() / cl.replicas()  ports by current role (CLUSTER NODES)
    cl.call(port, "CLUSTER", "KEYSLOT", "k")   one command (RESP client below)
    cl.pipeline(port, [cmd, ...])   many commands, one round trip
    cl.owner(slot)                  port of the primary that serves a slot
    cl.wait_ok()                    every live node sees cluster_state:ok and
                                    the same primaries
    cl.add_primary()                one more primary, serving no slot yet
    cl.move_slot(slot, port)        reshard one slot (keys and all) to port
    cl.stop()

    st = redis_cluster.Sentinel()    # primary, replica, one sentinel
    st.primary, st.replica, st.sentinel, st.master_name
    st.failover()                   SENTINEL FAILOVER, then wait until the
                                    sentinel names the other node

Command line (for shell benchmarks): prints shell assignments and leaves the
servers running; `stop DIR` stops them.

    python3 redis_cluster.py cluster [--primaries N] [--replicas N]
        -> CLUSTER_DIR=...  CLUSTER_PORTS=p1,p2,...  CLUSTER_SEED=p1
    python3 redis_cluster.py stop CLUSTER_DIR

Waits are polls with deadlines (no fixed sleeps), so a loaded machine only
makes them slower.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from pgtest import _is_zombie, _proc_start, register_pid

NODE_TIMEOUT_MS = 2000  # small, yet safe on a loaded 2-core machine


def crc16(data):
    """Redis Cluster's CRC16 (XMODEM) of bytes."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xffff
    return crc


def keyslot(key):
    """The hash slot of key (bytes), as CLUSTER KEYSLOT computes it."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc16(key) % 16384


class RespError(Exception):
    """An error reply (its text is the message)."""


class Resp:
    """A minimal blocking RESP2 client on one connection."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    @classmethod
    def on(cls, sock):
        """A Resp on a socket already open (a fake server's side: read()
        returns each command as a list of bytes)."""
        self = cls.__new__(cls)
        self.sock = sock
        self.buf = b""
        return self

    def close(self):
        self.sock.close()

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read(self):
        """One reply: bytes, int, list, None; an error reply as RespError."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError("bad RESP line %r" % line)

    def pipeline(self, commands):
        """Send every command, then read one reply each (errors as values)."""
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self.read() for _ in commands]

    def call(self, *args):
        """One command; an error reply raises RespError."""
        r = self.pipeline([args])[0]
        if isinstance(r, RespError):
            raise r
        return r


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def call(port, *args, timeout=10):
    """One command on a new connection to 127.0.0.1:port."""
    c = Resp(port, timeout=timeout)
    try:
        return c.call(*args)
    finally:
        c.close()


def _work_root():
    return os.environ.get("PGPOLY_WORK") or tempfile.gettempdir()


def _bindable(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _free_port(bus=False):
    """A free port; bus: also port + 10000 free and the port <= 55535 (a
    cluster node's bus port is its port + 10000)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if not bus:
            return port
        if port <= 55535 and _bindable(port + 10000):
            return port


def wait_until(cond, timeout, what):
    """Poll cond() until true; RuntimeError naming what after timeout s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except (OSError, RespError, ConnectionError) as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError("timed out after %s s waiting for %s%s"
                       % (timeout, what, " (last error: %s)" % last if last else ""))


class Servers:
    """redis-server processes this object started, by port."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=name + "-", dir=_work_root())
        self.procs = {}  # port -> pid

    def start(self, extra, label, conf=None):
        """Start one redis-server (extra: flags); return its port."""
        for _ in range(3):
            port = _free_port(bus="--cluster-enabled" in extra)
            d = os.path.join(self.dir, str(port))
            os.makedirs(d, exist_ok=True)
            pidfile = os.path.join(d, "redis.pid")
            cmd = ["redis-server"]
            if conf is not None:
                path = os.path.join(d, "redis.conf")
                with open(path, "w") as f:
                    f.write(conf.replace("@PORT@", str(port)))
                cmd.append(path)
            cmd += ["--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--daemonize", "yes",
                    "--repl-diskless-sync-delay", "0",
                    "--pidfile", pidfile, "--dir", d,
                    "--logfile", os.path.join(d, "redis.log")] + list(extra)
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: os.path.exists(pidfile) and
                           call(port, "PING", timeout=2) == "PONG", 10,
                           "redis-server on port %d" % port)
            except RuntimeError:
                self._kill_pidfile(pidfile)
                continue
            with open(pidfile) as f:
                pid = int(f.read().strip())
            register_pid(pid, label)
            self.procs[port] = pid
            return port
        raise RuntimeError("could not start redis-server (%s), see %s"
                           % (label, self.dir))

    @staticmethod
    def _kill_pidfile(pidfile):
        try:
            with open(pidfile) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def kill(self, port, sig=signal.SIGKILL):
        """Signal one server; SIGKILL waits until it is gone."""
        pid = self.procs[port]
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            wait_until(lambda: _proc_start(pid) is None or _is_zombie(pid), 10,
                       "redis %d to exit" % port)
            del self.procs[port]

    def stop(self):
        """SIGKILL every server still running (they hold no data we keep)."""
        for port in list(self.procs):
            try:
                self.kill(port)
            except (OSError, RuntimeError):
                self.procs.pop(port, None)


def parse_nodes(text):
    """CLUSTER NODES text -> list of dicts (port, id, flags, master, slots)."""
    nodes = []
    for line in _text(text).splitlines():
        f = line.split()
        if len(f) < 8:
            continue
        addr = f[1].split("@")[0]
        nodes.append({"id": f[0], "port": int(addr.rsplit(":", 1)[1]),
                      "flags": f[2].split(","), "master": f[3],
                      "link": f[7], "slots": f[8:]})
    return nodes


class Cluster:
    """A Redis Cluster of `primaries` primaries with `replicas` replicas each."""

    def __init__(self, primaries=3, replicas=1, node_timeout=NODE_TIMEOUT_MS):
        self.servers = Servers("redis-cluster")
        self.dir = self.servers.dir
        try:
            self.flags = ["--cluster-enabled", "yes",
                          "--cluster-config-file", "nodes.conf",
                          "--cluster-node-timeout", str(node_timeout),
                          "--cluster-replica-validity-factor", "0"]
            self.ports = [self.servers.start(self.flags, "redis-cluster")
                          for _ in range(primaries * (1 + replicas))]
            p = subprocess.run(
                ["redis-cli", "--cluster", "create"] +
                ["127.0.0.1:%d" % x for x in self.ports] +
                ["--cluster-replicas", str(replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                raise RuntimeError("redis-cli --cluster create failed: %s%s"
                                   % (p.stdout[-2000:], p.stderr[-2000:]))
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    def call(self, port, *args):
        return call(port, *args)

    def pipeline(self, port, commands):
        c = Resp(port)
        try:
            return c.pipeline(commands)
        finally:
            c.close()

    def live_ports(self):
        return [p for p in self.ports if p in self.servers.procs]

    def nodes(self, port=None):
        """CLUSTER NODES as seen by port (default: the first live node)."""
        return parse_nodes(self.call(port or self.live_ports()[0],
                                     "CLUSTER", "NODES"))

    def primaries(self, port=None):
        """Ports of the primaries that serve slots, in slot order."""
        ms = [n for n in self.nodes(port)
              if "master" in n["flags"] and "fail" not in n["flags"] and n["slots"]]
        ms.sort(key=lambda n: int(n["slots"][0].split("-")[0]))
        return [n["port"] for n in ms]

    def replicas(self, port=None):
        return [n["port"] for n in self.nodes(port) if "slave" in n["flags"]
                and n["port"] in self.servers.procs]

    def replica_of(self, primary):
        """Port of a live replica of the primary on port `primary`."""
        nodes = self.nodes()
        pid = [n["id"] for n in nodes if n["port"] == primary][0]
        return [n["port"] for n in nodes if n["master"] == pid
                and n["port"] in self.servers.procs][0]

    def master_of(self, replica):
        """Port of the primary a replica replicates."""
        nodes = self.nodes()
        mid = [n["master"] for n in nodes if n["port"] == replica][0]
        return [n["port"] for n in nodes if n["id"] == mid][0]

    def owner(self, slot):
        """Port of the primary serving slot (CLUSTER SLOTS of a live node)."""
        for r in self.call(self.live_ports()[0], "CLUSTER", "SLOTS"):
            if r[0] <= slot <= r[1]:
                return r[2][1]
        return None

    def keyslot(self, key):
        return self.call(self.live_ports()[0], "CLUSTER", "KEYSLOT", key)

    def _consistent(self, replicas_up):
        """Every live node: state ok, the same primaries, and (replicas_up)
        every live replica known as one and synced."""
        views = []
        live = self.live_ports()
        for port in live:
            if "cluster_state:ok" not in _text(self.call(port, "CLUSTER", "INFO")):
                return False
            nodes = self.nodes(port)
            views.append(tuple(self.primaries(port)))
            if replicas_up:
                known = [n for n in nodes if "slave" in n["flags"] and n["port"] in live]
                if len(known) != len(live) - len(views[-1]):
                    return False
                if port not in views[-1] and "master_link_status:up" not in \
                        _text(self.call(port, "INFO", "replication")):
                    return False
        return len(set(views)) == 1

    def wait_ok(self, timeout=60, replicas_up=True):
        """Wait until every live node is ok and agrees on the primaries (and
        on the replicas, synced, unless replicas_up is false)."""
        wait_until(lambda: self._consistent(replicas_up), timeout,
                   "the cluster to be ok on every node")

    def add_primary(self):
        """Start one more node and join it as a primary serving no slot (the
        target of a scale-out reshard); return its port.  It is not in
        self.ports: wait_ok() and primaries() keep to the original nodes
        (give its slots back before they are called); it stays a primary
        when it has none left (no replica migration)."""
        port = self.servers.start(self.flags + ["--cluster-allow-replica-migration", "no"],
                                  "redis-cluster")
        self.call(port, "CLUSTER", "MEET", "127.0.0.1", self.ports[0])
        wait_until(lambda: all(any(n["port"] == port for n in self.nodes(p))
                               for p in self.live_ports()) and
                   "cluster_state:ok" in _text(self.call(port, "CLUSTER", "INFO")),
                   30, "node %d to join the cluster" % port)
        return port

    def move_slot(self, slot, dst):
        """Move slot, keys and all, to the primary on port dst, as
        redis-cli --cluster reshard does: IMPORTING/MIGRATING, MIGRATE of
        every key, then SETSLOT NODE on every primary."""
        src = self.owner(slot)
        nodes = self.nodes()
        ids = {n["port"]: n["id"] for n in nodes}
        self.call(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
        self.call(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
        while True:
            keys = self.call(src, "CLUSTER", "GETKEYSINSLOT", slot, 1000)
            if not keys:
                break
            self.call(src, "MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys)
        masters = [n["port"] for n in nodes if "master" in n["flags"]
                   and "fail" not in n["flags"]]
        for port in [dst, src] + [p for p in masters if p not in (dst, src)]:
            self.call(port, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
        return src

    def flushall(self):
        for p in self.primaries():
            self.call(p, "FLUSHALL")

    def dbsize(self):
        """Keys on each primary: {port: n}."""
        return {p: self.call(p, "DBSIZE") for p in self.primaries()}

    def kill(self, port, sig=signal.SIGKILL):
        self.servers.kill(port, sig)

    def stop(self):
        self.servers.stop()


class Sentinel:
    """A primary, one replica of it, and a sentinel monitoring them."""

    master_name = "pgpoly"

    def __init__(self, down_after_ms=2000):
        self.servers = Servers("redis-sentinel")
        self.dir = self.servers.dir
        try:
            self.primary = self.servers.start([], "redis-sentinel-primary")
            self.replica = self.servers.start(
                ["--replicaof", "127.0.0.1", str(self.primary)],
                "redis-sentinel-replica")
            wait_until(lambda: "master_link_status:up" in
                       _text(call(self.replica, "INFO", "replication")), 30,
                       "the replica to sync")
            conf = ("sentinel monitor %s 127.0.0.1 %d 1\n"
                    "sentinel down-after-milliseconds %s %d\n"
                    "sentinel failover-timeout %s 10000\n"
                    % (self.master_name, self.primary, self.master_name,
                       down_after_ms, self.master_name))
            self.sentinel = self.servers.start(["--sentinel"], "redis-sentinel",
                                               conf=conf)
            self.wait_replica_known()
        except BaseException:
            self.stop()
            raise

    def master_addr(self):
        r = call(self.sentinel, "SENTINEL", "get-master-addr-by-name",
                 self.master_name)
        return None if r is None else int(r[1])

    def wait_replica_known(self, timeout=60):
        """Wait until the sentinel knows a healthy replica (a failover needs one)."""
        def ok():
            for r in call(self.sentinel, "SENTINEL", "REPLICAS", self.master_name):
                d = dict(zip(map(_text, r[0::2]), map(_text, r[1::2])))
                if ("s_down" not in d.get("flags", "") and
                        d.get("master-link-status") == "ok"):
                    return True
            return False
        wait_until(ok, timeout, "the sentinel to know a healthy replica")

    def failover(self, timeout=60):
        """SENTINEL FAILOVER; wait until the other node is primary and named,
        and the old one a replica again."""
        old = self.master_addr()
        new = self.replica if old == self.primary else self.primary
        self.wait_replica_known()
        wait_until(lambda: call(self.sentinel, "SENTINEL", "FAILOVER",
                                self.master_name) == "OK", timeout,
                   "SENTINEL FAILOVER to be accepted")
        wait_until(lambda: self.master_addr() == new and
                   _text(call(new, "ROLE")[0]) == "master" and
                   _text(call(old, "ROLE")[0]) == "slave", timeout,
                   "the sentinel to name port %d as primary" % new)
        return new

    def stop(self):
        self.servers.stop()


def _main(argv):
    if len(argv) >= 2 and argv[1] == "cluster":
        primaries, replicas = 3, 1
        args = argv[2:]
        while args:
            if args[0] == "--primaries":
                primaries = int(args[1])
            elif args[0] == "--replicas":
                replicas = int(args[1])
            else:
                sys.exit("unknown argument %s" % args[0])
            args = args[2:]
        cl = Cluster(primaries, replicas)
        with open(os.path.join(cl.dir, "pids"), "w") as f:
            f.write("".join("%d\n" % pid for pid in cl.servers.procs.values()))
        print("CLUSTER_DIR=%s" % cl.dir)
        print("CLUSTER_PORTS=%s" % ",".join(map(str, cl.ports)))
        print("CLUSTER_SEED=%d" % cl.primaries()[0])
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        try:
            with open(os.path.join(argv[2], "pids")) as f:
                pids = [int(x) for x in f.read().split()]
        except OSError as e:
            sys.exit("cannot read %s/pids: %s" % (argv[2], e))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return 0
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
