--
-- pgpoly_elastic: an UPDATE writes the columns its BEFORE ROW UPDATE
-- triggers set, not only the assigned ones (the partial "doc" update used
-- to leave them out).  Checked against a native table with the same
-- trigger.  Index regress_est_docs is created and dropped here.
--
\getenv es_url ES_URL
\set VERBOSITY terse
CREATE SERVER est FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER est;
SELECT pgpoly.elastic_request('est', 'DELETE', '/regress_est_docs') IS NOT NULL AS cleaned;
CREATE FOREIGN TABLE est_t (_id text, a text, b int, c text)
  SERVER est OPTIONS (index 'regress_est_docs', refresh 'true');
CREATE TABLE est_n (_id text PRIMARY KEY, a text, b int, c text);
CREATE FUNCTION est_trig() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.c := CASE WHEN NEW.a = 'null-c' THEN NULL ELSE 'trig-' || NEW.a END;
  IF NEW.a = 'new-id' THEN NEW._id := NEW._id || '-x'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER t BEFORE UPDATE ON est_t FOR EACH ROW EXECUTE FUNCTION est_trig();
CREATE TRIGGER t BEFORE UPDATE ON est_n FOR EACH ROW EXECUTE FUNCTION est_trig();
INSERT INTO est_t VALUES ('1', 'x', 1, 'c1'), ('2', 'y', 2, 'c2');
INSERT INTO est_n VALUES ('1', 'x', 1, 'c1'), ('2', 'y', 2, 'c2');
UPDATE est_t SET a = 'X' WHERE _id = '1';
UPDATE est_n SET a = 'X' WHERE _id = '1';
UPDATE est_t SET a = 'null-c' WHERE _id = '2';
UPDATE est_n SET a = 'null-c' WHERE _id = '2';
UPDATE est_t SET b = b + 10;
UPDATE est_n SET b = b + 10;
SELECT _id, a, b, c FROM est_t ORDER BY _id;
(SELECT _id, a, b, c FROM est_t EXCEPT SELECT * FROM est_n)
UNION ALL (SELECT * FROM est_n EXCEPT SELECT _id, a, b, c FROM est_t);
-- a trigger changing _id is refused as assigning it is
UPDATE est_t SET a = 'new-id' WHERE _id = '1';
SELECT pgpoly.elastic_request('est', 'DELETE', '/regress_est_docs') ->> 'acknowledged' AS dropped;
DROP SERVER est CASCADE;
DROP TABLE est_n;
DROP FUNCTION est_trig();
