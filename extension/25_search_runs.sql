-- extension/25_search_runs.sql
--	  search_runs(): MLflow's run search (filter strings and order_by clauses) over
--	  pgpoly.runs, params, tags and latest metrics.
--
-- Contract: API.md section 6 (registry additions).  Design invariants kept by this
-- file:
--	* No user text is ever spliced into SQL.  A filter is tokenized and parsed here;
--	  the generated WHERE and ORDER BY clauses are built only from fixed fragments
--	  chosen from allow-lists (operators, attribute columns), and every key, string,
--	  number and time the user wrote is passed as an element of a parameter array
--	  ($3 keys, $4 strings, $5 numbers, $6 times) that the fragments index with
--	  integers the parser counted.
--	* Grammar (MLflow's): filter = comparison { AND comparison }; comparison =
--	  entity operator value; entity = prefix "." key, the key bare
--	  (letters, digits, _ and inner dots) or in `backquotes` or "double quotes";
--	  prefixes metrics/metric, params/param/parameters/parameter, tags/tag,
--	  attributes/attribute/attr/run; an attribute may also be written without a
--	  prefix (status = 'FINISHED'), and created / Created stand for start_time,
--	  run name / Run name / Run Name for run_name, as in MLflow.  Values are numbers, or strings in single or
--	  double quotes ('' doubles a quote), or for IN / NOT IN a parenthesized list
--	  of strings.  Keywords are case-insensitive.  LIKE and ILIKE patterns are
--	  SQL's: % and _ are wildcards, a backslash escapes the next character.  order_by = clause { "," clause },
--	  clause = entity [ASC | DESC].
--	* Types follow MLflow: metrics compare with numbers (=, !=, <, <=, >, >=) on the
--	  run's latest value; params and tags are strings (=, !=, LIKE, ILIKE, IN, NOT
--	  IN); attributes run_id, run_name and status are strings (a run id in any
--	  uuid input form, e.g. MLflow's 32 hex digits, equals its run), start_time and
--	  end_time compare with epoch milliseconds (a number) or a timestamp (a string).
--	  A run without the metric, param or tag in a comparison does not match; in an
--	  ordering it sorts last.  A NaN metric compares as IEEE 754 and MLflow's file
--	  store have it (PostgreSQL's float8 order would make it equal to NaN and above
--	  every number): it matches != and no other operator, and in an ordering it
--	  comes after every number and before the runs without the metric, in both
--	  directions, as MLflow sorts it.
--	* Every malformed filter or order_by is a 22023 error whose message gives the
--	  1-based character position and what was expected there.

-- One token of a filter or order_by string.  kind: word, entity (val = prefix,
-- key = the key), number, string, op, lparen, rparen, comma, eof.
CREATE TYPE pgpoly._sr_token AS (kind text, val text, key text, pos int);

-- Raise the 22023 error of a malformed search string at position pos.
CREATE FUNCTION pgpoly._sr_syntax_error(what text, input text, pos int, message text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'invalid % at position %: %', what, pos, message
		USING ERRCODE = 'invalid_parameter_value',
			  DETAIL = format('Text from there: %s', coalesce(nullif(left(substr(input, pos), 40), ''),
															  '(end of input)')),
			  HINT = CASE what
						 WHEN 'filter' THEN 'Write comparisons joined by AND, e.g. metrics.rmse < 0.5 AND params.model = ''rf'' AND tags.`team name` LIKE ''ml%''.'
						 ELSE 'Write entities with an optional direction, e.g. metrics.rmse ASC, attributes.start_time DESC.'
					 END;
END
$$;

-- Split input into tokens, in order, ending with an eof token.  what names the
-- argument in errors ('filter' or 'order_by').  One pass of one regular
-- expression over the whole input (a filter may be a run_id IN list of thousands
-- of ids): every character belongs to exactly one match, so positions add up.
-- At a position the longest alternative wins (an entity over a bare prefix over
-- a word; a whole string over a lone quote); of equally long ones the first.
CREATE FUNCTION pgpoly._sr_tokenize(input text, what text)
RETURNS SETOF pgpoly._sr_token
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_pos int := 1;
	m     text[];
BEGIN
	FOR m IN SELECT regexp_matches(input,
		'(' ||
		'(\s+)' ||														-- 2 blanks
		'|([A-Za-z_][A-Za-z0-9_]*)\.(`([^`]*)`|"((?:[^"]|"")*)"|([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*))' ||
																		-- 3 prefix, 4 key as written, 5/6/7 the key
		'|([A-Za-z_][A-Za-z0-9_]*\.)' ||								-- 8 a prefix without a key
		'|([A-Za-z_][A-Za-z0-9_]*)' ||									-- 9 word
		'|([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)' ||	-- 10 number
		'|''((?:[^'']|'''')*)''|"((?:[^"]|"")*)"' ||					-- 11/12 string
		'|([''"`])' ||													-- 13 unterminated quote
		'|(<=|>=|!=|=|<|>)' ||											-- 14 operator
		'|([(),])' ||													-- 15 ( ) ,
		'|(.)' ||														-- 16 anything else
		')', 'g')
	LOOP
		IF m[3] IS NOT NULL AND coalesce(m[5], m[6], m[7]) = '' THEN
			PERFORM pgpoly._sr_syntax_error(what, input, v_pos + length(m[3]) + 1, 'empty key');
		ELSIF m[3] IS NOT NULL THEN
			RETURN NEXT ROW('entity', m[3], coalesce(m[5], replace(m[6], '""', '"'), m[7]),
							v_pos)::pgpoly._sr_token;
		ELSIF m[8] IS NOT NULL THEN
			PERFORM pgpoly._sr_syntax_error(what, input, v_pos + length(m[8]),
				'expected a key after the prefix (quote keys with special characters in `backquotes` or "double quotes")');
		ELSIF m[9] IS NOT NULL THEN
			RETURN NEXT ROW('word', m[9], NULL, v_pos)::pgpoly._sr_token;
		ELSIF m[10] IS NOT NULL THEN
			RETURN NEXT ROW('number', m[10], NULL, v_pos)::pgpoly._sr_token;
		ELSIF m[11] IS NOT NULL OR m[12] IS NOT NULL THEN
			RETURN NEXT ROW('string', coalesce(replace(m[11], '''''', ''''), replace(m[12], '""', '"')),
							NULL, v_pos)::pgpoly._sr_token;
		ELSIF m[13] IS NOT NULL THEN
			PERFORM pgpoly._sr_syntax_error(what, input, v_pos,
				format('unterminated quoted text (%s)', m[13]));
		ELSIF m[14] IS NOT NULL THEN
			RETURN NEXT ROW('op', m[14], NULL, v_pos)::pgpoly._sr_token;
		ELSIF m[15] IS NOT NULL THEN
			RETURN NEXT ROW(CASE m[15] WHEN '(' THEN 'lparen' WHEN ')' THEN 'rparen'
							ELSE 'comma' END, m[15], NULL, v_pos)::pgpoly._sr_token;
		ELSIF m[16] IS NOT NULL THEN
			PERFORM pgpoly._sr_syntax_error(what, input, v_pos,
				format('unexpected character "%s"', m[16]));
		END IF;
		v_pos := v_pos + length(m[1]);
	END LOOP;
	RETURN NEXT ROW('eof', NULL, NULL, v_pos)::pgpoly._sr_token;
END
$$;

-- The entity class of a prefix ('metric', 'param', 'tag', 'attribute'), or NULL.
CREATE FUNCTION pgpoly._sr_entity_class(prefix text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT CASE
		WHEN lower(prefix) IN ('metric', 'metrics') THEN 'metric'
		WHEN lower(prefix) IN ('param', 'params', 'parameter', 'parameters') THEN 'param'
		WHEN lower(prefix) IN ('tag', 'tags') THEN 'tag'
		WHEN lower(prefix) IN ('attribute', 'attributes', 'attr', 'run') THEN 'attribute'
	END
$$;

-- A bare word naming an attribute (MLflow reads an identifier without a prefix as
-- an attribute: status = 'FINISHED', order_by start_time DESC) as the entity token
-- attributes.<word>; any other token unchanged.
CREATE FUNCTION pgpoly._sr_bare_attribute(t pgpoly._sr_token)
RETURNS pgpoly._sr_token
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT CASE WHEN t.kind = 'word'
					 AND t.val IN ('run_id', 'run_name', 'status', 'start_time', 'end_time',
								   'created', 'Created')
				THEN ROW('entity', 'attributes', t.val, t.pos)::pgpoly._sr_token
				ELSE t END
$$;

-- The SQL expression (over runs r) of an entity token; key_no is the index of its
-- key in the keys parameter ($3).  Attribute columns come from a fixed list.
CREATE FUNCTION pgpoly._sr_entity_sql(t pgpoly._sr_token, key_no int, what text, input text,
									  OUT class text, OUT expr text)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	class := pgpoly._sr_entity_class(t.val);
	IF class IS NULL THEN
		PERFORM pgpoly._sr_syntax_error(what, input, t.pos,
			format('unknown entity type "%s" (valid: metrics, params, tags, attributes)', t.val));
	ELSIF class = 'metric' THEN
		expr := format('(SELECT m.value FROM pgpoly.latest_metrics m WHERE m.run_id = r.run_id AND m.key = $3[%s])', key_no);
	ELSIF class = 'param' THEN
		expr := format('(r.params ->> $3[%s])', key_no);
	ELSIF class = 'tag' THEN
		expr := format('(r.tags ->> $3[%s])', key_no);
	ELSE
		-- MLflow's aliases: created / Created, run name / Run name / Run Name
		expr := CASE t.key
					WHEN 'run_id' THEN 'r.run_id::text'
					WHEN 'run_name' THEN 'r.run_name'
					WHEN 'run name' THEN 'r.run_name'
					WHEN 'Run name' THEN 'r.run_name'
					WHEN 'Run Name' THEN 'r.run_name'
					WHEN 'status' THEN 'r.status'
					WHEN 'start_time' THEN 'r.start_time'
					WHEN 'created' THEN 'r.start_time'
					WHEN 'Created' THEN 'r.start_time'
					WHEN 'end_time' THEN 'r.end_time'
				END;
		IF expr IS NULL THEN
			PERFORM pgpoly._sr_syntax_error(what, input, t.pos,
				format('unknown attribute "%s" (valid: run_id, run_name, status, start_time, end_time)', t.key));
		END IF;
		IF t.key IN ('start_time', 'end_time', 'created', 'Created') THEN
			class := 'time';
		END IF;
	END IF;
END
$$;

-- The text a run_id is compared with by =, !=, IN and NOT IN: a uuid in any of
-- its input forms (upper case, without hyphens as MLflow writes run ids, in
-- braces) as run_id::text prints it; any other text as it is (it matches no run).
CREATE FUNCTION pgpoly._sr_run_id_text(val text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	RETURN val::uuid::text;
EXCEPTION WHEN invalid_text_representation THEN
	RETURN val;
END
$$;

-- The compiled form of a filter and an order_by: SQL text with parameter
-- references only, and the parameter arrays.
CREATE TYPE pgpoly._sr_query AS (
	where_sql text,
	order_sql text,
	keys      text[],
	strs      text[],
	nums      float8[],
	times     timestamptz[]
);

-- Compile a filter (NULL or blank: every run) into q.where_sql and its parameters.
CREATE FUNCTION pgpoly._sr_compile_filter(filter text)
RETURNS pgpoly._sr_query
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	q     pgpoly._sr_query := ROW('true', NULL, '{}', '{}', '{}', '{}');
	tok   pgpoly._sr_token[];
	i     int := 1;
	e     pgpoly._sr_token;
	op    pgpoly._sr_token;
	v     pgpoly._sr_token;
	ent   record;
	v_op  text;
	v_lo  int;
	v_run_id bool;
	v_list text[];
	conds text[] := '{}';
BEGIN
	IF filter IS NULL OR btrim(filter) = '' THEN
		RETURN q;
	END IF;
	tok := ARRAY(SELECT t FROM pgpoly._sr_tokenize(filter, 'filter') t);
	LOOP
		e := pgpoly._sr_bare_attribute(tok[i]);
		IF e.kind IS DISTINCT FROM 'entity' THEN
			PERFORM pgpoly._sr_syntax_error('filter', filter, e.pos,
				'expected an entity such as metrics.rmse, params.model, tags.team or attributes.status');
		END IF;
		q.keys := q.keys || e.key;
		ent := pgpoly._sr_entity_sql(e, cardinality(q.keys), 'filter', filter);
		-- the operator: = != < <= > >= LIKE ILIKE IN, NOT IN
		op := tok[i + 1];
		i := i + 2;
		IF op.kind = 'op' THEN
			v_op := CASE op.val WHEN '!=' THEN '<>' ELSE op.val END;
		ELSIF op.kind = 'word' AND upper(op.val) IN ('LIKE', 'ILIKE', 'IN') THEN
			v_op := upper(op.val);
		ELSIF op.kind = 'word' AND upper(op.val) = 'NOT' AND tok[i].kind = 'word'
			  AND upper(tok[i].val) = 'IN' THEN
			v_op := 'NOT IN';
			i := i + 1;
		ELSE
			PERFORM pgpoly._sr_syntax_error('filter', filter, op.pos,
				'expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN)');
		END IF;
		IF ent.class IN ('metric', 'time') AND v_op IN ('LIKE', 'ILIKE', 'IN', 'NOT IN') THEN
			PERFORM pgpoly._sr_syntax_error('filter', filter, op.pos,
				format('%s compares with =, !=, <, <=, >, >=, not %s', e.val || '.' || e.key, v_op));
		ELSIF ent.class NOT IN ('metric', 'time') AND v_op IN ('<', '<=', '>', '>=') THEN
			PERFORM pgpoly._sr_syntax_error('filter', filter, op.pos,
				format('%s is a string: compare it with =, !=, LIKE, ILIKE, IN or NOT IN, not %s',
					   e.val || '.' || e.key, op.val));
		END IF;

		-- the value (a run id as run_id::text prints it, except for LIKE patterns)
		v_run_id := ent.class = 'attribute' AND e.key = 'run_id';
		v := tok[i];
		i := i + 1;
		IF v_op IN ('IN', 'NOT IN') THEN
			IF v.kind IS DISTINCT FROM 'lparen' THEN
				PERFORM pgpoly._sr_syntax_error('filter', filter, v.pos, 'expected "(" after IN');
			END IF;
			v_lo := cardinality(q.strs) + 1;
			v_list := '{}';
			LOOP
				v := tok[i];
				IF v.kind IS DISTINCT FROM 'string' THEN
					PERFORM pgpoly._sr_syntax_error('filter', filter, v.pos, 'expected a quoted string in the IN list');
				END IF;
				-- a local array grows in place; q.strs once, after the list
				v_list := v_list || CASE WHEN v_run_id THEN pgpoly._sr_run_id_text(v.val) ELSE v.val END;
				i := i + 1;
				EXIT WHEN tok[i].kind = 'rparen';
				IF tok[i].kind IS DISTINCT FROM 'comma' THEN
					PERFORM pgpoly._sr_syntax_error('filter', filter, tok[i].pos, 'expected "," or ")" in the IN list');
				END IF;
				i := i + 1;
			END LOOP;
			i := i + 1;
			q.strs := q.strs || v_list;
			conds := conds || format('%s %s ($4[%s:%s])', ent.expr,
									 CASE v_op WHEN 'IN' THEN '= ANY' ELSE '<> ALL' END,
									 v_lo, cardinality(q.strs));
		ELSIF ent.class = 'metric' OR (ent.class = 'time' AND v.kind = 'number') THEN
			IF v.kind IS DISTINCT FROM 'number' THEN
				PERFORM pgpoly._sr_syntax_error('filter', filter, v.pos,
					format('expected a number to compare %s with', e.val || '.' || e.key));
			END IF;
			BEGIN
				q.nums := q.nums || v.val::float8;
			EXCEPTION WHEN data_exception THEN
				PERFORM pgpoly._sr_syntax_error('filter', filter, v.pos, format('number out of range: %s', v.val));
			END;
			conds := conds || CASE ent.class
				-- NaN: true for != only (PostgreSQL: NaN = NaN and NaN > every number)
				WHEN 'metric' THEN format(CASE v_op WHEN '<>' THEN '%s %s $5[%s]'
										 ELSE 'nullif(%s, ''NaN'') %s $5[%s]' END,
										 ent.expr, v_op, cardinality(q.nums))
				-- epoch milliseconds, as MLflow stores times
				ELSE format('floor(extract(epoch FROM %s) * 1000) %s $5[%s]', ent.expr, v_op,
							cardinality(q.nums)) END;
		ELSIF ent.class = 'time' THEN
			IF v.kind IS DISTINCT FROM 'string' THEN
				PERFORM pgpoly._sr_syntax_error('filter', filter, v.pos,
					format('expected epoch milliseconds or a quoted timestamp to compare %s with',
						   e.val || '.' || e.key));
			END IF;
			BEGIN
				q.times := q.times || v.val::timestamptz;
			EXCEPTION WHEN data_exception THEN
				PERFORM pgpoly._sr_syntax_error('filter', filter, v.pos, format('invalid timestamp %L', v.val));
			END;
			conds := conds || format('%s %s $6[%s]', ent.expr, v_op, cardinality(q.times));
		ELSE
			IF v.kind IS DISTINCT FROM 'string' THEN
				PERFORM pgpoly._sr_syntax_error('filter', filter, v.pos,
					format('expected a quoted string to compare %s with', e.val || '.' || e.key));
			END IF;
			-- checked here, not by LIKE, which complains only when some value
			-- reaches the end of the pattern: the data must not decide
			IF v_op IN ('LIKE', 'ILIKE') AND v.val ~ '(^|[^\\])(\\\\)*\\$' THEN
				PERFORM pgpoly._sr_syntax_error('filter', filter, v.pos,
					'the pattern ends with the escape character \ (write \\ for a backslash)');
			END IF;
			q.strs := q.strs || CASE WHEN v_run_id AND v_op IN ('=', '<>')
									 THEN pgpoly._sr_run_id_text(v.val) ELSE v.val END;
			conds := conds || format('%s %s $4[%s]', ent.expr, v_op, cardinality(q.strs));
		END IF;

		EXIT WHEN tok[i].kind = 'eof';
		IF NOT (tok[i].kind = 'word' AND upper(tok[i].val) = 'AND') THEN
			PERFORM pgpoly._sr_syntax_error('filter', filter, tok[i].pos,
				'expected AND or the end of the filter (OR is not supported)');
		END IF;
		i := i + 1;
	END LOOP;
	q.where_sql := array_to_string(conds, ' AND ');
	RETURN q;
END
$$;

-- Compile order_by (NULL or blank: none) into q.order_sql, adding its keys to q.
-- Runs missing the value sort last in both directions; NaN metrics just before them.
CREATE FUNCTION pgpoly._sr_compile_order(order_by text, q pgpoly._sr_query)
RETURNS pgpoly._sr_query
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	tok   pgpoly._sr_token[];
	i     int := 1;
	e     pgpoly._sr_token;
	ent   record;
	v_dir text;
	terms text[] := '{}';
BEGIN
	IF order_by IS NULL OR btrim(order_by) = '' THEN
		RETURN q;
	END IF;
	tok := ARRAY(SELECT t FROM pgpoly._sr_tokenize(order_by, 'order_by') t);
	LOOP
		e := pgpoly._sr_bare_attribute(tok[i]);
		IF e.kind IS DISTINCT FROM 'entity' THEN
			PERFORM pgpoly._sr_syntax_error('order_by', order_by, e.pos,
				'expected an entity such as metrics.rmse or attributes.start_time');
		END IF;
		q.keys := q.keys || e.key;
		ent := pgpoly._sr_entity_sql(e, cardinality(q.keys), 'order_by', order_by);
		i := i + 1;
		v_dir := 'ASC';
		IF tok[i].kind = 'word' AND upper(tok[i].val) IN ('ASC', 'DESC') THEN
			v_dir := upper(tok[i].val);
			i := i + 1;
		END IF;
		-- a NaN metric after the numbers in both directions: false (a number)
		-- before true (NaN) before NULL (no metric)
		terms := terms || CASE ent.class WHEN 'metric' THEN format('(%1$s = ''NaN'') NULLS LAST, %1$s %2$s NULLS LAST', ent.expr, v_dir)
									   ELSE format('%s %s NULLS LAST', ent.expr, v_dir) END;
		EXIT WHEN tok[i].kind = 'eof';
		IF tok[i].kind IS DISTINCT FROM 'comma' THEN
			PERFORM pgpoly._sr_syntax_error('order_by', order_by, tok[i].pos,
				'expected ASC, DESC, "," or the end of order_by');
		END IF;
		i := i + 1;
	END LOOP;
	q.order_sql := array_to_string(terms, ', ');
	RETURN q;
END
$$;

CREATE FUNCTION pgpoly.search_runs(experiment text, filter text DEFAULT NULL,
								   order_by text DEFAULT NULL, max_results int DEFAULT 100)
RETURNS SETOF pgpoly.runs
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_exp bigint;
	q     pgpoly._sr_query;
BEGIN
	PERFORM pgpoly._require_name(experiment, 'experiment');
	PERFORM pgpoly._require(max_results, 'max_results');
	IF max_results < 1 THEN
		RAISE EXCEPTION 'max_results must be positive (got %)', max_results
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT e.experiment_id INTO v_exp FROM pgpoly.experiments e WHERE e.name = experiment COLLATE pg_catalog."default";
	IF NOT FOUND THEN
		RAISE EXCEPTION 'experiment "%" does not exist', experiment
			USING ERRCODE = 'undefined_object',
				  HINT = 'Experiments are created by pgpoly.start_run().';
	END IF;
	q := pgpoly._sr_compile_order(order_by COLLATE pg_catalog."default", pgpoly._sr_compile_filter(filter COLLATE pg_catalog."default"));
	-- MLflow's default and tie-breaking order: newest first, then run id
	RETURN QUERY EXECUTE format(
		'SELECT r.* FROM pgpoly.runs r WHERE r.experiment_id = $1 AND %s ORDER BY %s r.start_time DESC, r.run_id LIMIT $2',
		q.where_sql, coalesce(q.order_sql || ', ', ''))
	USING v_exp, max_results, q.keys, q.strs, q.nums, q.times;
END
$$;

COMMENT ON FUNCTION pgpoly.search_runs(text, text, text, int) IS
	'Runs of an experiment matching an MLflow filter string (metrics./params./tags./attributes. comparisons joined by AND), ordered by an MLflow order_by (e.g. ''metrics.rmse ASC''), at most max_results';
