#!/usr/bin/env bash
#
# test/jdbc/run.sh -- `make jdbc-check`: pgjdbc (Debian's libpostgresql-jdbc-java)
# against a Redis hash table and an Elasticsearch index beside native copies
# (test/jdbc/DriverCheck.java), under several connection property sets and a
# JVM time zone that is not UTC.  Not part of `make test`: it needs a JDK.
# Starts its own servers through test/lib.sh; prints "N passed, N failed".
set -euo pipefail

# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$PGPOLY_ROOT"

PGPOLY_PACKAGES="$PGPOLY_PACKAGES libpostgresql-jdbc-java default-jdk-headless"
pgpoly_setup
jar=/usr/share/java/postgresql.jar
classes="$PGPOLY_WORK/jdbc"
mkdir -p "$classes"
javac -d "$classes" -cp "$jar" test/jdbc/DriverCheck.java

export PGDATABASE=pgpoly_jdbc
dropdb --if-exists pgpoly_jdbc
createdb pgpoly_jdbc
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION pgpoly;
CREATE SERVER rs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '$REDIS_PORT');
CREATE FOREIGN TABLE rh (k text OPTIONS (key 'true'), n int, d float8, num numeric,
    ts timestamptz) SERVER rs OPTIONS (key_prefix 'jdbc:', fetch_size '7');
CREATE TABLE nh (k text, n int, d float8, num numeric, ts timestamptz);
CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '$ES_URL');
SELECT pgpoly.elastic_request('es', 'PUT', '/pgpoly_jdbc',
    '{"mappings": {"properties": {"n": {"type": "long"}, "d": {"type": "double"},
      "num": {"type": "double"}, "ts": {"type": "date"}}}}') IS NOT NULL;
CREATE FOREIGN TABLE e (_id text, n int, d float8, num numeric, ts timestamptz,
    _source jsonb) SERVER es OPTIONS (index 'pgpoly_jdbc', refresh 'true');
CREATE TABLE ne (_id text, n int, d float8, num numeric, ts timestamptz, _source jsonb);
INSERT INTO nh (k, n, d, num, ts) SELECT 'k' || i, i, i / 3.0, i / 8.0,
    '2024-01-01 10:00:00+02'::timestamptz + i * interval '7 hours 15 minutes'
    FROM generate_series(1, 60) i;
INSERT INTO rh (k, n, d, num, ts) SELECT k, n, d, num, ts FROM nh;
INSERT INTO e (_id, n, d, num, ts) SELECT k, n, d, num, ts FROM nh;
INSERT INTO ne SELECT _id, n, d, num, ts, _source FROM e;
SQL

rc=0
for run in "UTC|" "Asia/Kathmandu|&prepareThreshold=1&binaryTransfer=true" \
	"America/St_Johns|&reWriteBatchedInserts=true&prepareThreshold=3"; do
	java -Duser.timezone="${run%%|*}" -cp "$jar:$classes" DriverCheck "${run#*|}" || rc=1
done
exit "$rc"
