#!/bin/bash
# bench_lineage.sh - time a 10-deep upstream pgpoly.lineage() on a 100k-edge graph.
#
# Builds, in a scratch database, a layered lineage graph shaped like a real ML
# platform: raw datasets -> ingest jobs -> staged datasets -> feature views ->
# training sets -> runs -> model versions -> scoring jobs -> prediction datasets ->
# export jobs -> ES indexes / vector collections -> consumer jobs (12 layers).
# Nodes belong to pipelines of PIPE_WIDTH nodes per layer; each node has FAN_IN
# parents in the previous layer, from its own pipeline except with probability
# CROSS (shared sources, e.g. a common customers table).  Edges are inserted
# directly (no run/model rows exist for these synthetic names).
#
# Then, for START_NODES consumer jobs, it runs the 10-deep upstream walk with
# pgpoly.lineage() and with a hand-written recursive CTE over the same edges
# (UNION dedups (node, depth), min depth per node: the best plain-SQL form),
# checks both find the same nodes, and prints the median of each and the ratio.
# Then the same comparison on a chain of CHAIN (1000) edges added to the graph,
# walked from its end with max_depth CHAIN (target: within 3x of the CTE).
# Timing is server-side (clock_timestamp around EXECUTE, planning included).
# A line ending in MISSED means a target was not met.
#
# Usage: PGHOST=... PGPORT=... PGUSER=... test/bench/bench_lineage.sh
# Environment: EDGES (100000), FAN_IN (3), PIPE_WIDTH (25), CROSS (0.02),
#              START_NODES (20), REPEAT (3), DEPTH (10), CHAIN (1000),
#              CHAIN_REPEAT (15), PGPOLY_EXTENSION (pgpoly),
#              KEEP_DB (set: keep the scratch database for inspection)
set -euo pipefail

EDGES=${EDGES:-100000}
FAN_IN=${FAN_IN:-3}
PIPE_WIDTH=${PIPE_WIDTH:-25}
CROSS=${CROSS:-0.02}
START_NODES=${START_NODES:-20}
REPEAT=${REPEAT:-3}
DEPTH=${DEPTH:-10}
CHAIN=${CHAIN:-1000}
CHAIN_REPEAT=${CHAIN_REPEAT:-15}
EXT=${PGPOLY_EXTENSION:-pgpoly}
DB=${BENCH_DB:-pgpoly_bench_lineage_$$}
LAYERS=12
# nodes per layer so that (LAYERS - 1) transitions * FAN_IN edges ~= EDGES
WIDTH=$(( (EDGES + (LAYERS - 1) * FAN_IN - 1) / ((LAYERS - 1) * FAN_IN) ))

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d "$DB")
# shellcheck source=test/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

cleanup() { [ -n "${KEEP_DB:-}" ] || dropdb --if-exists "$DB" 2>/dev/null || true; }
trap cleanup EXIT

createdb "$DB"
"${PSQL[@]}" -c "CREATE EXTENSION $EXT"

echo "building graph: $LAYERS layers x $WIDTH nodes, fan-in $FAN_IN," \
     "pipelines of $PIPE_WIDTH, cross-pipeline edges $CROSS"
"${PSQL[@]}" <<SQL
SELECT setseed(0.42) \\gset
CREATE TEMP TABLE layer(l int PRIMARY KEY, kind text, prefix text);
INSERT INTO layer VALUES
	(0, 'dataset', 'raw'), (1, 'job', 'ingest'), (2, 'dataset', 'staged'),
	(3, 'feature_view', 'fv'), (4, 'dataset', 'train'), (5, 'run', 'run'),
	(6, 'model_version', 'model'), (7, 'job', 'score'), (8, 'dataset', 'pred'),
	(9, 'job', 'export'), (10, 'es_index', 'idx'), (11, 'job', 'consumer');
-- node j of layer l is named prefix_j (model versions: model_<j/5>@<j%5+1>)
CREATE FUNCTION pg_temp.node(l int, j int) RETURNS text LANGUAGE sql AS \$\$
	SELECT CASE WHEN l = 6 THEN 'model_' || j / 5 || '@' || j % 5 + 1
	            ELSE (SELECT prefix FROM layer WHERE layer.l = \$1) || '_' || j END
\$\$;
INSERT INTO pgpoly.lineage_edges (src_kind, src_name, dst_kind, dst_name, relation)
SELECT DISTINCT ps.kind, pg_temp.node(e.l - 1, e.p), pd.kind, pg_temp.node(e.l, e.j), 'derived'
FROM (SELECT l, j,
             CASE WHEN random() < $CROSS
                  THEN floor(random() * $WIDTH)::int                -- a shared source
                  ELSE least((j / $PIPE_WIDTH) * $PIPE_WIDTH        -- same pipeline,
                             + (h + k * 7) % $PIPE_WIDTH, $WIDTH - 1)  -- distinct per k
             END AS p
      FROM generate_series(1, $LAYERS - 1) AS l,
           generate_series(0, $WIDTH - 1) AS j,
           LATERAL (SELECT floor(random() * $PIPE_WIDTH)::int + 0 * j + 0 * l AS h) AS hh,
           generate_series(1, $FAN_IN) AS k) AS e
JOIN layer ps ON ps.l = e.l - 1
JOIN layer pd ON pd.l = e.l;
VACUUM ANALYZE pgpoly.lineage_edges;
SQL
"${PSQL[@]}" -At -c "SELECT 'edges: ' || count(*) FROM pgpoly.lineage_edges"

"${PSQL[@]}" <<SQL
-- milliseconds one execution of q takes, and the count it returns
CREATE FUNCTION bench_ms(q text, OUT ms float8, OUT n bigint) LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz;
BEGIN
	t0 := clock_timestamp();
	EXECUTE q INTO n;
	ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
END
\$\$;
CREATE TABLE bench_result(method text, start text, rep int, ms float8, n bigint);
SQL

# the walk to time and its baseline, for a max depth $1
lineage_q() { echo "SELECT count(*) FROM pgpoly.lineage('job', %L, 'upstream', $1)"; }
baseline_q() {
	echo "WITH RECURSIVE up(kind, name, depth) AS (
	SELECT 'job'::text, %L::text, 0
	UNION
	SELECT e.src_kind, e.src_name, u.depth + 1
	FROM up u JOIN pgpoly.lineage_edges e ON e.dst_kind = u.kind AND e.dst_name = u.name
	WHERE u.depth < $1)
SELECT count(*) FROM (SELECT kind, name FROM up WHERE depth > 0
                      GROUP BY kind, name) s"
}
LINEAGE_Q=$(lineage_q "$DEPTH")
BASELINE_Q=$(baseline_q "$DEPTH")

"${PSQL[@]}" <<SQL
DO \$\$
DECLARE
	s text;
	r int;
BEGIN
	-- warm up: compile the functions, load caches
	PERFORM bench_ms(format(\$q\$$LINEAGE_Q\$q\$, 'consumer_0'));
	PERFORM bench_ms(format(\$q\$$BASELINE_Q\$q\$, 'consumer_0'));
	FOR s IN SELECT 'consumer_' || (i * $WIDTH / $START_NODES)
	         FROM generate_series(0, $START_NODES - 1) i LOOP
		FOR r IN 1 .. $REPEAT LOOP
			INSERT INTO bench_result SELECT 'lineage', s, r, b.* FROM bench_ms(format(\$q\$$LINEAGE_Q\$q\$, s)) b;
			INSERT INTO bench_result SELECT 'baseline', s, r, b.* FROM bench_ms(format(\$q\$$BASELINE_Q\$q\$, s)) b;
		END LOOP;
	END LOOP;
END
\$\$;
SQL

MISMATCH=$("${PSQL[@]}" -At -c "
	SELECT count(*) FROM bench_result a JOIN bench_result b USING (start, rep)
	WHERE a.method = 'lineage' AND b.method = 'baseline' AND a.n <> b.n")
if [ "$MISMATCH" != 0 ]; then
	echo "ERROR: lineage() and the baseline CTE disagree on $MISMATCH walks" >&2
	exit 1
fi

"${PSQL[@]}" -At -F ' ' <<SQL
SELECT format('nodes reached per walk: min %s, median %s, max %s',
              min(n), percentile_disc(0.5) WITHIN GROUP (ORDER BY n), max(n))
FROM bench_result WHERE method = 'lineage';
WITH m AS (
	SELECT method, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS median
	FROM bench_result GROUP BY method)
SELECT format('%s-deep upstream, %s walks each: lineage() median %s ms, baseline CTE median %s ms, ratio %s (target: well under 50 ms)%s',
              $DEPTH, $START_NODES * $REPEAT,
              round(l.median::numeric, 2), round(b.median::numeric, 2),
              round((l.median / b.median)::numeric, 2),
              CASE WHEN l.median < 50 THEN '' ELSE ' MISSED' END)
FROM m l, m b WHERE l.method = 'lineage' AND b.method = 'baseline';
SQL

# the medians of the walks above, before the chain's runs replace them
read -r m_lin m_base < <("${PSQL[@]}" -At -F ' ' -c "
	SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE method = 'lineage')::numeric, 2),
	       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE method = 'baseline')::numeric, 2)
	FROM bench_result")
bench_report "lineage() $DEPTH-deep upstream, $((EDGES / 1000))k-edge graph (median of $((START_NODES * REPEAT)))" "$m_lin ms" \
	"hand-written recursive CTE $m_base ms ($(bench_calc "$m_lin / $m_base")x)" "$m_lin" "<" 50 figure

# --- a deep chain: job chain_0 -> chain_1 -> ... -> chain_CHAIN ---------------
"${PSQL[@]}" <<SQL
INSERT INTO pgpoly.lineage_edges (src_kind, src_name, dst_kind, dst_name, relation)
SELECT 'job', 'chain_' || i, 'job', 'chain_' || (i + 1), 'derived' FROM generate_series(0, $CHAIN - 1) i;
ANALYZE pgpoly.lineage_edges;
TRUNCATE bench_result;
DO \$\$
BEGIN
	-- warm up, then alternate the two methods
	PERFORM bench_ms(format(\$q\$$(lineage_q "$CHAIN")\$q\$, 'chain_$CHAIN'));
	PERFORM bench_ms(format(\$q\$$(baseline_q "$CHAIN")\$q\$, 'chain_$CHAIN'));
	FOR r IN 1 .. $CHAIN_REPEAT LOOP
		INSERT INTO bench_result SELECT 'lineage', 'chain', r, b.*
		FROM bench_ms(format(\$q\$$(lineage_q "$CHAIN")\$q\$, 'chain_$CHAIN')) b;
		INSERT INTO bench_result SELECT 'baseline', 'chain', r, b.*
		FROM bench_ms(format(\$q\$$(baseline_q "$CHAIN")\$q\$, 'chain_$CHAIN')) b;
	END LOOP;
END
\$\$;
SQL
MISMATCH=$("${PSQL[@]}" -At -c "
	SELECT count(*) FROM bench_result WHERE n <> $CHAIN")
if [ "$MISMATCH" != 0 ]; then
	echo "ERROR: a chain walk did not reach $CHAIN nodes" >&2
	exit 1
fi
"${PSQL[@]}" -At -F ' ' <<SQL
WITH m AS (
	SELECT method, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS median
	FROM bench_result GROUP BY method)
SELECT format('%s-deep chain, upstream from its end, %s walks each: lineage() median %s ms, baseline CTE median %s ms, ratio %s (target <= 3)%s',
              $CHAIN, $CHAIN_REPEAT, round(l.median::numeric, 2), round(b.median::numeric, 2),
              round((l.median / b.median)::numeric, 2),
              CASE WHEN l.median <= 3 * b.median THEN '' ELSE ' MISSED' END)
FROM m l, m b WHERE l.method = 'lineage' AND b.method = 'baseline';
SQL
read -r m_lin m_base < <("${PSQL[@]}" -At -F ' ' -c "
	SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE method = 'lineage')::numeric, 2),
	       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE method = 'baseline')::numeric, 2)
	FROM bench_result")
bench_report "lineage() $CHAIN-deep chain, upstream from its end (median of $CHAIN_REPEAT)" "$m_lin ms" \
	"hand-written recursive CTE $m_base ms" "$(bench_calc "$m_lin / $m_base")" "<=" 3
bench_summary bench_lineage
