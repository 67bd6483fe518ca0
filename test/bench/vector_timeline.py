#!/usr/bin/env python3
"""Where the wall time of a vector k-NN query goes, from syscall tracepoints.

Reads `perf script -F comm,pid,time,event,trace` of a `perf record -a` with
the events syscalls:sys_enter_sendto, sys_exit_sendto, sys_enter_recvfrom
and sys_exit_recvfrom (test/bench/profile_vector.sh records them), and prints
the mean and the median of each phase of a query, in ms:

  vector_timeline.py pgbench < SCRIPT
      pgbench -> backend -> the service -> backend -> pgbench: pgbench's
      send of the query to the backend's read of it (the hand-over to the
      backend), the backend's work until it sends the HTTP request, the
      service (request sent to the first bytes of the answer read), the
      backend's work until it sends the result, the hand-over back to
      pgbench, and pgbench's own time between two queries;
  vector_timeline.py client COMM < SCRIPT
      a direct client (process name COMM, vector_raw): the service, as
      above, and the client's time from an answer to its next request.

The first 5 queries (warm-up) are left out.  Not part of pgpoly.
"""

import re
import statistics
import sys
from collections import Counter

EVENT = re.compile(r"\s*(\S+)\s+(\d+)\s+([\d.]+):\s+syscalls:sys_(enter|exit)_"
                   r"(sendto|recvfrom):\s*(.*)")


def events(stream):
    """(ms, comm, pid, 'enter'|'exit', call, fd or None, result or None)."""
    for line in stream:
        m = EVENT.match(line)
        if not m:
            continue
        comm, pid, t, edge, call, rest = m.groups()
        fd = ret = None
        if edge == "enter":
            fd = int(re.search(r"fd: (0x[0-9a-f]+)", rest).group(1), 16)
        else:
            ret = int(rest.strip(), 16)
            if ret >= 1 << 63:
                ret -= 1 << 64
        yield float(t) * 1000, comm, int(pid), edge, call, fd, ret


def show(name, values):
    print("  %-44s mean %7.3f  median %7.3f" % (name, statistics.mean(values),
                                               statistics.median(values)))


def client(evs, comm):
    """Phases of a direct client's queries."""
    evs = [e for e in evs if e[1] == comm]
    fd = Counter(e[5] for e in evs if e[3] == "enter" and e[4] == "sendto").most_common(1)[0][0]
    last_fd = None
    sent = answered = None
    service, between = [], []
    for t, _, _, edge, call, efd, ret in evs:
        if edge == "enter":
            last_fd = efd
        if edge == "enter" and call == "sendto" and efd == fd:
            if answered is not None:
                between.append(t - answered)
            sent = t
        elif edge == "exit" and call == "recvfrom" and last_fd == fd and ret and ret > 0 \
                and sent is not None:
            service.append(t - sent)
            sent, answered = None, t
    print("%s: %d queries" % (comm, len(service[5:])))
    show("the service (request sent -> answer read)", service[5:])
    show("the client (answer -> next request)", between[5:])


def pgbench_backend(evs):
    """
    The pid of pgbench's backend: of the postgres processes (other sessions
    and other clusters trace too), the one that most often reads something
    between a send of pgbench and its read of the answer.
    """
    score = Counter()
    window = None
    for _, comm, pid, edge, call, _, ret in evs:
        if comm == "pgbench":
            if edge == "enter" and call == "sendto":
                window = set()
            elif edge == "exit" and call == "recvfrom" and ret and ret > 0:
                window = None
        elif comm == "postgres" and window is not None and edge == "exit" \
                and call == "recvfrom" and ret and ret > 0 and pid not in window:
            window.add(pid)
            score[pid] += 1
    return score.most_common(1)[0][0]


def pgbench(evs):
    """Phases of pgbench's queries through the backend."""
    evs = list(evs)
    backend = pgbench_backend(evs)
    evs = [e for e in evs if e[1] == "pgbench" or e[2] == backend]
    # the client socket: the one the backend reads right after pgbench sent
    first = next(i for i, e in enumerate(evs) if e[1] == "pgbench" and e[3] == "enter"
                 and e[4] == "sendto")
    cfd = next(e[5] for e in evs[first:] if e[2] == backend and e[3] == "enter"
               and e[4] == "recvfrom")
    rows, cur, last_fd = [], {}, {}
    for t, comm, _, edge, call, fd, ret in evs:
        if comm == "pgbench":
            if edge == "enter" and call == "sendto":
                cur = {"P0": t}
            elif edge == "exit" and call == "recvfrom" and ret and ret > 0 and "T3" in cur \
                    and "P1" not in cur:
                cur["P1"] = t
                rows.append(cur)
            continue
        if edge == "enter":
            last_fd[call] = fd
        got = edge == "exit" and call == "recvfrom" and ret and ret > 0
        if got and last_fd.get(call) == cfd and "P0" in cur and "T0" not in cur:
            cur["T0"] = t
        elif edge == "enter" and call == "sendto" and fd != cfd and "T0" in cur and "T1" not in cur:
            cur["T1"] = t
        elif got and last_fd.get(call) != cfd and "T1" in cur and "T2" not in cur:
            cur["T2"] = t
        elif edge == "enter" and call == "sendto" and fd == cfd and "T2" in cur and "T3" not in cur:
            cur["T3"] = t
    rows = [r for r in rows if len(r) == 6][5:]
    print("pgbench through the backend: %d queries" % len(rows))
    for name, a, b in (("end to end (pgbench's send -> its read)", "P0", "P1"),
                       ("hand-over to the backend", "P0", "T0"),
                       ("backend until the HTTP request", "T0", "T1"),
                       ("the service (request sent -> answer read)", "T1", "T2"),
                       ("backend until the result is sent", "T2", "T3"),
                       ("hand-over back to pgbench", "T3", "P1")):
        show(name, [r[b] - r[a] for r in rows])
    show("pgbench (result -> next query)", [rows[i + 1]["P0"] - rows[i]["P1"]
                                            for i in range(len(rows) - 1)])


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "pgbench":
        pgbench(events(sys.stdin))
    elif len(sys.argv) == 3 and sys.argv[1] == "client":
        client(list(events(sys.stdin)), sys.argv[2])
    else:
        sys.exit(__doc__)
