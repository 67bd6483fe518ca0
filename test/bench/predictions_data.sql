-- The predictions of bench_monitoring.sh and profile.sh's predictions50k:
-- a model with a champion alias, this month's partition, and bench_json
-- holding the JSON text of :rows predictions (psql variable rows).
SELECT pgpoly.register_model_version('bench_model', 's3://bench/1');
SELECT pgpoly.set_model_alias('bench_model', 'champion', 1);
SELECT pgpoly.create_prediction_partitions(now(), now());
CREATE TABLE bench_json AS
SELECT jsonb_agg(jsonb_build_object(
	'model', 'bench_model@champion', 'entity', 'u' || g,
	'prediction', jsonb_build_object('p', round(random()::numeric, 4)),
	'features', jsonb_build_object('age', 18 + g % 60, 'plan', CASE WHEN g % 3 = 0 THEN 'pro' ELSE 'free' END),
	'confidence', round(random()::numeric, 3), 'latency_ms', round((random() * 20)::numeric, 2),
	'request_id', 'req-' || g))::text AS j
FROM generate_series(1, :rows) g;
