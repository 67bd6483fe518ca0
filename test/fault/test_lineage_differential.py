#!/usr/bin/env python3
"""pgpoly.lineage() against the level-by-level walk it replaced, on random graphs.

pgpoly.lineage() is one recursive query.  Until it was rewritten, the walk ran
one query per level in PL/pgSQL with an explicit visited set; that
implementation is kept here, unchanged, as the oracle (schema "oracle" of a
scratch database).  For random graphs (cycles, diamonds, parallel edges with
different relations, several node kinds, self-contained and sprawling), from
every start node, for each direction and several max_depth values:

  * upstream and downstream: the new and the old walk return the same rows
    (depth, kind, name, relation, parent_kind, parent_name);
  * both: the same nodes at the same depths; the parent edge too, except for
    a node reached both ways at the same depth, where the old walk picked
    either direction's edge arbitrarily and the new one takes the upstream
    edge: there the new row must equal the old upstream walk's row.

Independently of both, every walk is also checked against a breadth-first
search written here in Python from the contract (README "Lineage"): each node
reachable within max_depth once, at its minimal depth, the start node left
out; its parent edge one from a neighbour at the depth above, for 'both' an
upstream one first, then the smallest (parent kind, parent name, relation).
Node names there include spaces, quotes, backslashes, '@', '|' and non-ASCII
letters.

A failing graph is reported with its seed (LINEAGE_DIFF_SEED=<seed> re-runs
just that one).  Environment: LINEAGE_DIFF_GRAPHS (default 6; more with a larger value).
"""

import json
import os
import random

import pgtest

GRAPHS = int(os.environ.get("LINEAGE_DIFF_GRAPHS", "6"))
ONLY_SEED = os.environ.get("LINEAGE_DIFF_SEED")
DEPTHS = [0, 1, 2, 4, 100000]
KINDS = ["dataset", "job", "feature_view", "es_index"]
RELATIONS = ["derived", "input", "output"]

# The walk before the rewrite (extension/20_registry.sql at 0203fed), verbatim
# apart from the schema; oracle.lineage() is its direction handling.
ORACLE = r"""
CREATE SCHEMA oracle;
CREATE FUNCTION oracle._lineage_walk(kind text, name text, upstream bool, max_depth int)
RETURNS TABLE (depth int, node_kind text, node_name text, relation text,
			   parent_kind text, parent_name text)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	v_depth int := 0;
	v_fk  text[] := ARRAY[kind];
	v_fn  text[] := ARRAY[name];
	v_seen jsonb := jsonb_build_object(kind || ':' || name, 0);
	v_nk  text[];
	v_nn  text[];
	v_rel text[];
	v_pk  text[];
	v_pn  text[];
BEGIN
	WHILE v_depth < max_depth LOOP
		v_depth := v_depth + 1;
		IF upstream THEN
			SELECT array_agg(s.k), array_agg(s.n), array_agg(s.r), array_agg(s.pk), array_agg(s.pn)
			INTO v_nk, v_nn, v_rel, v_pk, v_pn
			FROM (SELECT DISTINCT ON (e.src_kind, e.src_name)
						 e.src_kind AS k, e.src_name AS n, e.relation AS r,
						 e.dst_kind AS pk, e.dst_name AS pn
				  FROM unnest(v_fk, v_fn) AS f(k, n)
				  JOIN pgpoly.lineage_edges e ON e.dst_kind = f.k AND e.dst_name = f.n
				  WHERE NOT v_seen ? (e.src_kind || ':' || e.src_name)
				  ORDER BY e.src_kind, e.src_name, e.dst_kind, e.dst_name, e.relation) s;
		ELSE
			SELECT array_agg(s.k), array_agg(s.n), array_agg(s.r), array_agg(s.pk), array_agg(s.pn)
			INTO v_nk, v_nn, v_rel, v_pk, v_pn
			FROM (SELECT DISTINCT ON (e.dst_kind, e.dst_name)
						 e.dst_kind AS k, e.dst_name AS n, e.relation AS r,
						 e.src_kind AS pk, e.src_name AS pn
				  FROM unnest(v_fk, v_fn) AS f(k, n)
				  JOIN pgpoly.lineage_edges e ON e.src_kind = f.k AND e.src_name = f.n
				  WHERE NOT v_seen ? (e.dst_kind || ':' || e.dst_name)
				  ORDER BY e.dst_kind, e.dst_name, e.src_kind, e.src_name, e.relation) s;
		END IF;
		EXIT WHEN v_nk IS NULL;

		RETURN QUERY SELECT v_depth, u.* FROM unnest(v_nk, v_nn, v_rel, v_pk, v_pn) AS u;
		SELECT v_seen || jsonb_object_agg(u.k || ':' || u.n, v_depth)
		INTO v_seen FROM unnest(v_nk, v_nn) AS u(k, n);
		v_fk := v_nk;
		v_fn := v_nn;
	END LOOP;
END
$$;
CREATE FUNCTION oracle.lineage(kind text, name text, direction text, max_depth int)
RETURNS TABLE (depth int, node_kind text, node_name text, relation text,
			   parent_kind text, parent_name text)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	IF direction <> 'both' THEN
		RETURN QUERY SELECT * FROM oracle._lineage_walk(kind, name, direction = 'upstream', max_depth);
		RETURN;
	END IF;
	RETURN QUERY
		SELECT w.* FROM (
			SELECT DISTINCT ON (b.node_kind, b.node_name) b.*
			FROM (SELECT * FROM oracle._lineage_walk(kind, name, true, max_depth)
				  UNION ALL
				  SELECT * FROM oracle._lineage_walk(kind, name, false, max_depth)) AS b
			ORDER BY b.node_kind, b.node_name, b.depth) AS w
		ORDER BY w.depth, w.node_kind, w.node_name;
END
$$;
"""

# Every (start, direction, max_depth) of the graph; one row per disagreement.
COMPARE = r"""
\set QUIET 1
CREATE TEMP TABLE starts AS
	SELECT DISTINCT k, n FROM (SELECT src_kind, src_name FROM pgpoly.lineage_edges
	                           UNION ALL SELECT dst_kind, dst_name FROM pgpoly.lineage_edges) s(k, n);
CREATE TEMP TABLE cases AS
	SELECT s.k, s.n, d.dir, m.depth
	FROM starts s, unnest('{upstream,downstream,both}'::text[]) d(dir),
	     unnest('%(depths)s'::int[]) m(depth);
CREATE TEMP TABLE got_new AS
	SELECT c.k AS sk, c.n AS sn, c.dir, c.depth AS maxd, l.*
	FROM cases c, pgpoly.lineage(c.k, c.n, c.dir, c.depth) l;
CREATE TEMP TABLE got_old AS
	SELECT c.k AS sk, c.n AS sn, c.dir, c.depth AS maxd, l.*
	FROM cases c, oracle.lineage(c.k, c.n, c.dir, c.depth) l;
-- the old walk's upstream and downstream depth of each node reached both ways
CREATE TEMP TABLE ties AS
	SELECT u.sk, u.sn, u.maxd, u.node_kind, u.node_name
	FROM got_old u JOIN got_old d USING (sk, sn, maxd, node_kind, node_name)
	WHERE u.dir = 'upstream' AND d.dir = 'downstream' AND u.depth = d.depth;
SELECT 'cases ' || count(*) FROM cases;
SELECT 'rows ' || count(*) FROM got_new;
SELECT 'ties ' || count(*) FROM ties;
-- exact for one direction
(SELECT 'only new', sk, sn, dir, maxd, depth, kind, name, relation, parent_kind, parent_name
 FROM got_new WHERE dir <> 'both'
 EXCEPT SELECT 'only new', sk, sn, dir, maxd, depth, node_kind, node_name, relation, parent_kind, parent_name
 FROM got_old WHERE dir <> 'both')
UNION ALL
(SELECT 'only old', sk, sn, dir, maxd, depth, node_kind, node_name, relation, parent_kind, parent_name
 FROM got_old WHERE dir <> 'both'
 EXCEPT SELECT 'only old', sk, sn, dir, maxd, depth, kind, name, relation, parent_kind, parent_name
 FROM got_new WHERE dir <> 'both')
UNION ALL
-- both: nodes and depths exact
(SELECT 'both: only new', sk, sn, dir, maxd, depth, kind, name, NULL, NULL, NULL
 FROM got_new WHERE dir = 'both'
 EXCEPT SELECT 'both: only new', sk, sn, dir, maxd, depth, node_kind, node_name, NULL, NULL, NULL
 FROM got_old WHERE dir = 'both')
UNION ALL
(SELECT 'both: only old', sk, sn, dir, maxd, depth, node_kind, node_name, NULL, NULL, NULL
 FROM got_old WHERE dir = 'both'
 EXCEPT SELECT 'both: only old', sk, sn, dir, maxd, depth, kind, name, NULL, NULL, NULL
 FROM got_new WHERE dir = 'both')
UNION ALL
-- both: the parent edge, as the old walk's where it was unambiguous, else the
-- old upstream walk's
SELECT 'both: parent', n.sk, n.sn, n.dir, n.maxd, n.depth, n.kind, n.name,
       n.relation, n.parent_kind, n.parent_name
FROM got_new n
JOIN got_old o ON o.dir = n.dir AND o.sk = n.sk AND o.sn = n.sn AND o.maxd = n.maxd
              AND o.node_kind = n.kind AND o.node_name = n.name
LEFT JOIN ties t ON t.sk = n.sk AND t.sn = n.sn AND t.maxd = n.maxd
                AND t.node_kind = n.kind AND t.node_name = n.name
LEFT JOIN got_old u ON t.sk IS NOT NULL AND u.dir = 'upstream' AND u.sk = n.sk
                   AND u.sn = n.sn AND u.maxd = n.maxd
                   AND u.node_kind = n.kind AND u.node_name = n.name
WHERE n.dir = 'both'
  AND (n.relation, n.parent_kind, n.parent_name) IS DISTINCT FROM
      CASE WHEN t.sk IS NULL THEN (o.relation, o.parent_kind, o.parent_name)
           ELSE (u.relation, u.parent_kind, u.parent_name) END
LIMIT 20;
"""


ODD_NAMES = ["a b", "it's", 'say "x"', "back\\slash", "m@3", "p|q", "ünï", "N", "n"]


def node_name(rng, i):
    """A node name; sometimes one with characters that need care."""
    if rng.random() < 0.2:
        return "%s %d" % (rng.choice(ODD_NAMES), i)
    return "n%d" % i


def random_graph(rng):
    """A list of edges (src_kind, src_name, dst_kind, dst_name, relation)."""
    nodes = [(rng.choice(KINDS), node_name(rng, i)) for i in range(rng.randint(2, 32))]
    shape = rng.choice(["sparse", "dense", "layered", "chain"])
    edges = set()
    if shape == "chain":
        for a, b in zip(nodes, nodes[1:]):
            edges.add(a + b + (rng.choice(RELATIONS),))
        # a few back and cross edges make cycles and shortcuts
        for _ in range(rng.randint(0, 4)):
            a, b = rng.sample(nodes, 2)
            edges.add(a + b + (rng.choice(RELATIONS),))
    else:
        count = {"sparse": len(nodes), "dense": len(nodes) * 4,
                 "layered": len(nodes) * 2}[shape]
        for _ in range(count):
            if shape == "layered":
                i = rng.randrange(len(nodes) - 1)
                j = rng.randrange(i + 1, min(len(nodes), i + 6))
                a, b = nodes[i], nodes[j]
                if rng.random() < 0.05:     # the occasional cycle
                    a, b = b, a
            else:
                a, b = rng.sample(nodes, 2)
            edges.add(a + b + (rng.choice(RELATIONS),))
            if rng.random() < 0.1:          # a parallel edge, another relation
                edges.add(a + b + (rng.choice(RELATIONS),))
    return sorted(edges)


def sql_str(v):
    return "'%s'" % v.replace("'", "''")


def bfs_reference(edges, start, direction, max_depth):
    """The rows lineage() must return, as a set of tuples (see the docstring)."""
    up, down = {}, {}
    for sk, sn, dk, dn, rel in edges:
        up.setdefault((dk, dn), []).append(((sk, sn), rel))
        down.setdefault((sk, sn), []).append(((dk, dn), rel))

    def walk(adj):
        dist, frontier = {start: 0}, [start]
        for d in range(1, max_depth + 1):
            nxt = []
            for node in frontier:
                for other, _ in adj.get(node, []):
                    if other not in dist:
                        dist[other] = d
                        nxt.append(other)
            frontier = nxt
        return dist
    walks = []
    if direction in ("upstream", "both"):
        walks.append((0, walk(up), down))      # parent: the dst of an edge from node
    if direction in ("downstream", "both"):
        walks.append((1, walk(down), up))      # parent: the src of an edge into node
    best = {}
    for order, dist, back in walks:
        for node, d in dist.items():
            if node == start:
                continue
            for parent, rel in back.get(node, []):
                if dist.get(parent) == d - 1:
                    key = (d, order, parent[0], parent[1], rel)
                    if node not in best or key < best[node]:
                        best[node] = key
    return {(k[0], n[0], n[1], k[4], k[2], k[3]) for n, k in best.items()}


def check_bfs(db, edges, seed):
    """pgpoly.lineage() against bfs_reference() for every start, direction and depth."""
    r = pgtest.psql(
        "SELECT json_build_array(c.k, c.n, d.dir, m.depth, l.depth, l.kind, l.name, "
        "l.relation, l.parent_kind, l.parent_name) "
        "FROM (SELECT DISTINCT k, n FROM (SELECT src_kind, src_name FROM pgpoly.lineage_edges "
        "UNION ALL SELECT dst_kind, dst_name FROM pgpoly.lineage_edges) s(k, n)) c, "
        "unnest('{upstream,downstream,both}'::text[]) d(dir), unnest('{%s}'::int[]) m(depth), "
        "pgpoly.lineage(c.k, c.n, d.dir, m.depth) l;" % ",".join(map(str, DEPTHS)),
        db=db, timeout=120)
    if not pgtest.check(r.rc == 0, "seed %d: lineage() failed: %s" % (seed, r.err)):
        return 0
    got = {}
    for line in r.out.splitlines():
        row = json.loads(line)
        got.setdefault(tuple(row[:4]), set()).add(tuple(row[4:]))
    starts = {(e[0], e[1]) for e in edges} | {(e[2], e[3]) for e in edges}
    bad = 0
    for k, n in sorted(starts):
        for direction in ("upstream", "downstream", "both"):
            for depth in DEPTHS:
                want = bfs_reference(edges, (k, n), direction, min(depth, 64))
                have = got.get((k, n, direction, depth), set())
                if want != have and bad < 5:
                    bad += 1
                    pgtest.check(False, "seed %d: lineage(%r, %r, %r, %d) differs from the BFS:"
                                 "\n  only pgpoly: %s\n  only BFS:    %s"
                                 % (seed, k, n, direction, depth, sorted(have - want),
                                    sorted(want - have)))
    return sum(len(v) for v in got.values())


def load(db, edges):
    """Replace the database's lineage edges by edges."""
    values = ",\n".join("(%s)" % ", ".join(map(sql_str, e)) for e in edges)
    r = pgtest.psql("TRUNCATE pgpoly.lineage_edges;\n"
                    "INSERT INTO pgpoly.lineage_edges "
                    "(src_kind, src_name, dst_kind, dst_name, relation) VALUES\n"
                    + values + ";\nANALYZE pgpoly.lineage_edges;\n", db=db)
    if r.rc != 0:
        raise RuntimeError("loading the graph failed: %s" % r.err)


def test():
    db = pgtest.create_db("pgpoly_lineage_diff")
    r = pgtest.psql(ORACLE, db=db)
    if r.rc != 0:
        raise RuntimeError("creating the oracle failed: %s" % r.err)
    seeds = [int(ONLY_SEED)] if ONLY_SEED else range(1, GRAPHS + 1)
    total_cases = total_rows = total_ties = total_bfs = 0
    for seed in seeds:
        edges = random_graph(random.Random(seed))
        load(db, edges)
        r = pgtest.psql(COMPARE % {"depths": "{%s}" % ",".join(map(str, DEPTHS))},
                        db=db, timeout=120)
        if not pgtest.check(r.rc == 0, "seed %d: comparison failed: %s" % (seed, r.err)):
            continue
        lines = r.out.splitlines()
        stats = dict(l.split(" ", 1) for l in lines[:3])
        total_cases += int(stats["cases"])
        total_rows += int(stats["rows"])
        total_ties += int(stats["ties"])
        diffs = lines[3:]
        pgtest.check(not diffs, "seed %d (%d edges): new and old lineage differ:\n  %s"
                     % (seed, len(edges), "\n  ".join(diffs)))
        total_bfs += check_bfs(db, edges, seed)
    print("%d graphs, %d walks, %d rows compared, %d both-way ties"
          % (len(seeds), total_cases, total_rows, total_ties))
    print("%d rows checked against the Python BFS" % total_bfs)
    pgtest.check(total_rows > 1000, "the graphs are big enough to compare something")
    pgtest.check(total_bfs == total_rows, "the BFS check saw every row")


pgtest.main(test)
