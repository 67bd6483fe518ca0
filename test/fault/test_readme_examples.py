"""The README's walk-through runs as written and gives what it shows.

A new user follows README.md section by section: the Redis, Search, Vector
search, sync, dead letters, outbox, registry, privileges, feature store and
monitoring examples.  This test takes those ```sql blocks from README.md itself, in
that order, and runs each with psql in one scratch database, stopping at
the first error.  Only the store addresses change (a private Redis for the
keys the examples write, the harness's Elasticsearch and Chroma), and the
index and collection names get a pgpoly_readme_ prefix on the shared
servers (put back before comparing).

What a block shows is checked:
  * a result table in its comments ("--  u1      | ...") must be in psql's
    output, line for line;
  * a plain ``` block that follows a walk-through block (the EXPLAIN
    (VERBOSE) outputs of the cross-store join, the _search request and the
    k-NN request) must be what EXPLAIN (VERBOSE, COSTS OFF) of the block's
    last SELECT prints.

A README edit that breaks an example, or a code change that changes what
the README shows, fails here with the block, the command output and the
difference.
"""

import os
import re
import subprocess

import pgtest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (section heading, which ```sql block of it), in the order a user runs them
WALK = [
    ("## Redis: `pgpoly_redis`", 0),
    ("## Search (`pgpoly_elastic`)", 0),
    ("## Vector search", 0),
    ("## Keeping stores in sync", 0),
    ("### Dead letters", 0),
    ("### Outbox tables (write_mode 'outbox')", 0),
    ("### Worked example", 0),
    ("### Privileges: a reader/writer role pattern", 0),
    ("## Feature store", 0),
    ("## Inference data and monitoring", 0),
]

# names on the shared servers: README name -> the test's
NAMES = [("'model-cards'", "'pgpoly_readme_cards'"),
         ("/model-cards/", "/pgpoly_readme_cards/"),
         ("collection 'models'", "collection 'pgpoly_readme_models'"),
         ("{id of \"models\"}", "{id of \"pgpoly_readme_models\"}"),
         ("index 'products'", "index 'pgpoly_readme_products'"),
         ("collection 'products'", "collection 'pgpoly_readme_products'")]

ROLES = ["trainer", "grafana", "ml_writer", "ml_reader"]


def sections(text):
    """{heading line: [(kind, body)]} of README's fenced blocks (kind: the
    fence's language, '' for none), each with the plain block after it."""
    out = {}
    heading = None
    for m in re.finditer(r"^(#{2,4} [^\n]*)$|^```(\w*)\n(.*?)^```$", text, re.M | re.S):
        if m.group(1):
            heading = m.group(1).strip()
            out.setdefault(heading, [])
        elif heading:
            out[heading].append((m.group(2), m.group(3)))
    return out


def localize(sql, env):
    """The README's SQL with this run's store addresses and names."""
    sql = sql.replace("port '6379'", "port '%s'" % env["redis_port"])
    sql = sql.replace("url 'https://es1:9200, https://es2:9200', ca_file '/etc/ssl/es-ca.pem'",
                      "url '%s'" % env["es_url"])
    sql = sql.replace("\n  OPTIONS (username 'pgpoly', password 'secret');", ";")
    sql = sql.replace("url 'http://127.0.0.1:8000'", "url '%s'" % env["chroma_url"])
    sql = sql.replace(" OPTIONS (api_key '...');", ";")
    for readme, ours in NAMES:
        sql = sql.replace(readme, ours)
    return sql


def unlocalize(out):
    for readme, ours in NAMES:
        out = out.replace(ours, readme)
    return out


def run_psql(db, sql):
    p = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", "-"],
                       input=sql, capture_output=True, text=True, timeout=120 * pgtest.SCALE)
    return p.returncode, p.stdout, p.stderr


def shown_tables(sql):
    """The result tables a block shows in its comments: lists of lines."""
    tables, cur = [], []
    for line in sql.splitlines() + [""]:
        m = re.match(r"^-- ( +\S.*\|.*|-+(\+-+)+)\s*$", line)
        if m:
            cur.append(m.group(1).rstrip())
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def normalize(lines):
    # the key's TTL counts down: ttl_seconds '86400' reads 86400 or just under
    return [re.sub(r"\| 8639\d$", "| 86400", l.rstrip()) for l in lines]


def contains(out_lines, want):
    n = len(want)
    return any(out_lines[i:i + n] == want for i in range(len(out_lines) - n + 1))


def last_select(sql):
    stmts = [s.strip() for s in re.sub(r"--[^\n]*", "", sql).split(";")]
    sel = [s for s in stmts if s.upper().startswith("SELECT")]
    return sel[-1] if sel else None


def test():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    secs = sections(text)
    env = {"redis_port": pgtest.start_redis(),
           "es_url": os.environ["ES_URL"], "chroma_url": os.environ["CHROMA_URL"]}
    db = pgtest.create_db("pgpoly_readme")
    cleanup_stores(db, env)
    for r in ROLES:     # left by an interrupted run
        pgtest.psql("DROP ROLE IF EXISTS %s;" % r, db=db)
    try:
        for heading, nth in WALK:
            if not pgtest.check(heading in secs, "README has a section %r" % heading):
                return
            blocks = secs[heading]
            sql_at = [i for i, (kind, _) in enumerate(blocks) if kind == "sql"]
            if not pgtest.check(len(sql_at) > nth, "%s has an sql block %d" % (heading, nth)):
                return
            i = sql_at[nth]
            sql = blocks[i][1]
            rc, out, err = run_psql(db, localize(sql, env))
            if not pgtest.check(rc == 0, "the sql block of %s runs as written:\n%s\n%s\n%s"
                                % (heading, sql, out, err)):
                return
            out_lines = normalize(unlocalize(out).splitlines())
            for want in shown_tables(sql):
                pgtest.check(contains(out_lines, normalize(want)),
                             "%s shows\n%s\nbut psql printed\n%s"
                             % (heading, "\n".join(want), out))
            if i + 1 < len(blocks) and blocks[i + 1][0] == "" and "Output:" in blocks[i + 1][1]:
                check_explain(db, env, heading, sql, blocks[i + 1][1])
    finally:
        # deliveries the examples did not wait for, before their targets go
        pgtest.psql("SELECT pgpoly.sync_wait(NULL, '30 s');", db=db)
        for r in ROLES:
            pgtest.psql("DROP OWNED BY %s; DROP ROLE %s;" % (r, r), db=db)
        cleanup_stores(db, env)


def check_explain(db, env, heading, sql, shown):
    """The plain block after a walk-through block is its last query's plan."""
    query = last_select(sql)
    rc, out, err = run_psql(db, "EXPLAIN (VERBOSE, COSTS OFF) %s;" % localize(query, env))
    if not pgtest.check(rc == 0, "EXPLAIN of %s's query runs: %s" % (heading, err)):
        return
    plan = [l.rstrip() for l in unlocalize(out).splitlines()[2:-2]]
    want = [l.rstrip() for l in shown.splitlines()]
    pgtest.check(plan == want, "%s shows the plan\n%s\nbut EXPLAIN (VERBOSE, COSTS OFF) prints\n%s"
                 % (heading, "\n".join(want), "\n".join(plan)))


def cleanup_stores(db, env):
    """Drop the test's index and collections on the shared servers."""
    for ours in ("pgpoly_readme_cards", "pgpoly_readme_products"):
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "DELETE",
                        "%s/%s" % (env["es_url"], ours)], timeout=30)
    for ours in ("pgpoly_readme_models", "pgpoly_readme_products"):
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "DELETE",
                        "%s/api/v2/tenants/default_tenant/databases/default_database/collections/%s"
                        % (env["chroma_url"], ours)], timeout=30)


pgtest.main(test)
