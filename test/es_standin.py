#!/usr/bin/env python3
"""An in-memory stand-in for the Elasticsearch REST API (test equipment).

Elasticsearch cannot be installed on the test machines, so pgpoly's
pgpoly_elastic tests run against this small server.  It answers exactly the
endpoints pgpoly uses, with the response shapes, status codes and error
bodies the Elasticsearch reference documents, and rejects what Elasticsearch
rejects (a bulk body without its trailing newline, from + size over
index.max_result_window, sorting on a text field ...).  It is not a search
engine: scoring is a plain term-frequency sum, analysis is lower-casing and
splitting on non-alphanumerics.  An index has one shard unless its
settings ask for more (see Routing below).

The same SQL tests run unchanged against a real cluster (PGPOLY_ES_URL), so
nothing here may be relied on that Elasticsearch would not do.

Endpoints (reference pages under
https://www.elastic.co/guide/en/elasticsearch/reference/current/):
  GET  /                          rest-api-root.html ("You Know, for Search")
  PUT  /<index>                   indices-create-index.html
  DELETE /<index>                 indices-delete-index.html
  GET  /<index>/_mapping          indices-get-mapping.html
  GET  /<index>                   indices-get-index.html (aliases, mappings,
                                  settings as strings, nested; "defaults"
                                  for include_defaults=true)
  any response: ?filter_path=     common-options.html#common-options-response-filtering
                                  (comma-separated dotted paths, * and **)
  POST /<index>/_refresh          indices-refresh.html
  GET|POST /<index>/_search       search-search.html (query, sort, size, from,
                                  search_after, pit, _source, track_total_hits,
                                  track_scores); paginate-search-results.html
  POST /<index>/_pit              point-in-time-api.html (open)
  DELETE /_pit                    point-in-time-api.html (close)
  POST /_search/scroll            scroll-api.html
  (OpenSearch >= 2.4, --distribution opensearch, instead of /_pit; pages
  under https://docs.opensearch.org/latest/api-reference/search-apis/:
  point-in-time-api/)
  POST /<index>/_search/point_in_time?keep_alive=
                                  create a PIT: {"pit_id", "_shards",
                                  "creation_time"}
  DELETE /_search/point_in_time   {"pit_id": [...]}: {"pits": [{"pit_id",
                                  "successful"}]}, always 200
  OpenSearch adds no implicit PIT tiebreaker and has no _shard_doc before
  3.3 (opensearch-project/OpenSearch#18924): a sort on it is rejected.
  DELETE /_search/scroll          clear-scroll-api.html
  GET|POST /<index>/_count        search-count.html
  POST /_bulk, /<index>/_bulk     docs-bulk.html (action metadata
                                  if_seq_no/if_primary_term: a document
                                  without that version fails the item
                                  with 409 version_conflict_engine_exception;
                                  an "update" of a missing document is 404
                                  document_missing_exception first)
Optimistic concurrency control (optimistic-concurrency-control.html): every
write of an index takes the next _seq_no of the index (one counter for all
its shards, primary term 1); index/update/delete items and _mget documents
carry the document's _seq_no and _primary_term, and search hits do when the
body asks for "seq_no_primary_term": true (search-search.html).
Routing (mapping-routing-field.html): "shard_num = hash(_routing) %
num_primary_shards", where "the default _routing value is the document's
_id"; num_primary_shards is index.number_of_shards of PUT /<index>
(settings, default 1 here).  A document lives on one shard: an index,
create, update or delete action reaches the document of its _id on the
shard its "routing" (bulk action metadata, docs-bulk.html) or else its _id
names, so "the same routing value needs to be provided when getting,
deleting, or updating the document": without it an update of a routed
document is 404 document_missing_exception, a delete 404 "not_found", and
an index action creates a second document with the same _id on another
shard ("the uniqueness of the _id is not guaranteed across all of the
shards in the index").  A search hit of a document indexed with a routing
carries it as "_routing".  A mapping {"_routing": {"required": true}}
refuses every action without a routing with 400 routing_missing_exception
("routing is required for [<index>]/[<id>]").  The hash here is CRC-32,
not Elasticsearch's Murmur3: which shard is which does not matter, only
that a routing other than the _id may name another shard.
  GET|POST /<index>/_mget         docs-multi-get.html ({"ids": [...]} or
                                  {"docs": [{"_id", "routing"}]}; a missing
                                  index, an alias of several indices or a
                                  missing required routing is a
                                  per-document error)
  POST /_aliases, PUT /<index>/_alias/<name>
                                  indices-aliases.html, indices-add-alias.html
                                  ("add" actions with is_write_index,
                                  "remove" actions)
Aliases (aliases.html): a name standing for one or more indices.  A search,
count, mapping or PIT of an alias reads its indices, and every hit carries
the concrete "_index" it came from.  A write (bulk action) addressed to an
alias goes to its write index: the index added with "is_write_index": true,
or its only index unless that one has is_write_index false; an alias of
several indices without one is 400 illegal_argument_exception "no write
index is defined for alias [...]".  A write addressed to a wildcard pattern
or a comma list is 400 invalid_index_name_exception (index names "cannot
include ... *, ..., ,", indices-create-index.html).  Wildcards here expand
over index names only.
Closed indices and index blocks (indices-close.html, indices-open-close.html:
"A closed index is blocked for read/write operations ... It is not possible
to index documents or to search for documents in a closed index";
index-modules-blocks.html):
  POST /<index>/_close            {"acknowledged", "shards_acknowledged",
                                  "indices": {<index>: {"closed": true}}}
  POST /<index>/_open             {"acknowledged", "shards_acknowledged"}
  PUT  /<index>/_settings         index.blocks.write, index.blocks.read_only,
                                  index.blocks.read_only_allow_delete (flat
                                  or nested; null removes): {"acknowledged"}
  A search, count, PIT or multi-get naming a closed index (or an alias of
  one) is 400 index_closed_exception, reason "closed", with "index" and
  "index_uuid" (IndexClosedException answers 400 since Elasticsearch 6.0,
  elastic/elasticsearch#25752); a wildcard expands to open indices only
  (expand_wildcards defaults to "open", api-conventions.html).  A bulk
  action on a closed index fails its item with that error (the bulk API
  answers 200, docs-bulk.html; TransportBulkAction
  addFailureIfIndexIsUnavailable).  A bulk action on an index with a write
  block fails its item with cluster_block_exception, reason "index [<index>]
  blocked by: [FORBIDDEN/8/index write (api)];" (403; read_only:
  FORBIDDEN/5/index read-only (api)), and with the flood-stage block
  read_only_allow_delete "index [<index>] blocked by:
  [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has
  read-only-allow-delete block];" (429 since 7.7, elastic/elasticsearch#50166
  and #58410; deletes are refused too: "When
  index.blocks.read_only_allow_delete is set to true, deleting documents is
  not permitted").
  PUT /_cluster/settings {"persistent"|"transient": {"action.auto_create_index":
  false}} (docs-index_.html, "Automatically create data streams and
  indices"): a bulk index or create action on a missing index then fails
  its item with 404 index_not_found_exception, reason "no such index
  [<index>] and [action.auto_create_index] is [false]".
Mapping parameters the searches honour (mapping-params.html): a keyword
longer than "ignore_above" characters is not indexed (ignore-above.html);
an explicit null is indexed as "null_value"
(null-value.html); a "copy_to" target indexes the values copied into it,
which its _source lacks (copy-to.html); a numeric, date or boolean field
with "ignore_malformed" (or under the index setting
index.mapping.ignore_malformed) keeps a document whose value it cannot
parse and indexes no value for it (ignore-malformed.html,
https://www.elastic.co/guide/en/elasticsearch/reference/current/ignore-malformed.html).  A "runtime" section is kept and
returned by GET _mapping only (no scripts run here).
A document's _source is returned as the JSON text it was indexed with,
and written again (numbers with a fraction as doubles) when filtered or
updated, as Elasticsearch does (RawSource).  query_string takes Lucene's
syntax (QsParser) and answers text it cannot parse with Elasticsearch's 400.
Error bodies follow common-options.html / the REST error format:
  {"error": {"root_cause": [...], "type": ..., "reason": ...}, "status": N}

Test control (not Elasticsearch):
  POST   /_standin/faults  {"faults": [{"status": 429, "count": 2,
                           "path": "_search", "skip": 0, "delay_ms": 0,
                           "truncate": false, "garbage": false}]}
         the next `count` requests whose path contains `path` (or equals
         `exact`; any when both are absent), after `skip` of them (0), are delayed, answered with `status` (ES error body),
         a truncated body, or non-JSON garbage.  {"item_faults": {"7": 429,
         "8": 400}} instead: a _bulk request answers those items with that
         status (429: es_rejected_execution_exception, else
         mapper_parsing_exception) without applying them, the others as usual.
  DELETE /_standin/faults  clears them.
  GET    /_standin/stats   request counters, open PITs and scrolls, and the
                           last requests (method, path, content type).

Usage: es_standin.py --port N [--distribution opensearch --version 2.11.0]
                     [--auth user:password] [--api-key KEY]
"""

import argparse
import base64
import bisect
import copy
import datetime
import fnmatch
import itertools
import json
import math
import re
import struct
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

MAX_RESULT_WINDOW = 10000
MAX_TERMS_COUNT = 65536
MAX_CONTENT_LENGTH = 100 * 1024 * 1024   # http.max_content_length
PRIMARY_TERM = 1          # one shard, never failed over
LOCK = threading.RLock()


class EsError(Exception):
    """An Elasticsearch error response."""

    def __init__(self, status, etype, reason, **extra):
        super().__init__(reason)
        self.status = status
        self.etype = etype
        self.reason = reason
        self.extra = extra

    def body(self):
        cause = {"type": self.etype, "reason": self.reason}
        cause.update(self.extra)
        err = {"root_cause": getattr(self, "root", None) or [cause]}
        err.update(cause)
        return {"error": err, "status": self.status}


def index_not_found(name):
    return EsError(404, "index_not_found_exception",
                   "no such index [%s]" % name, index=name,
                   **{"resource.type": "index_or_alias", "resource.id": name})


def bad_request(reason, etype="illegal_argument_exception"):
    return EsError(400, etype, reason)


def index_closed(idx):
    return EsError(400, "index_closed_exception", "closed",
                   index_uuid=idx.uuid, index=idx.name)


# index.blocks.<name>: (status, the block as ClusterBlockException prints it)
WRITE_BLOCKS = {
    "read_only": (403, "FORBIDDEN/5/index read-only (api)"),
    "write": (403, "FORBIDDEN/8/index write (api)"),
    "read_only_allow_delete": (429, "TOO_MANY_REQUESTS/12/disk usage exceeded "
                               "flood-stage watermark, index has "
                               "read-only-allow-delete block"),
}


def write_blocked(idx):
    """The cluster_block_exception of a write to idx, or None."""
    for name, (status, block) in WRITE_BLOCKS.items():
        if idx.blocks.get(name):
            return EsError(status, "cluster_block_exception",
                           "index [%s] blocked by: [%s];" % (idx.name, block))
    return None


# ---------------------------------------------------------------- values

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
                     r"(Z|[+-]\d{2}:?\d{2})?)?$")
TOKEN_RE = re.compile(r"\w+", re.UNICODE)


def tokens(text):
    """Standard-analyzer approximation: lower-case word tokens."""
    return [t.lower() for t in TOKEN_RE.findall(str(text))]


def parse_date(v, nanos=False):
    """Epoch millis (a date field; nanos: a date_nanos field, to the
    microsecond) of an ISO date/time string or a number; None if bad."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return int(v)
    s = str(v).strip()
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    if not DATE_RE.match(s):
        return None
    s = s.replace(" ", "T", 1)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    m = re.search(r"([+-]\d{2})(\d{2})$", s)
    if m and ":" not in s[-6:]:
        s = s[:m.start()] + m.group(1) + ":" + m.group(2)
    frac = re.search(r"\.(\d+)", s)
    if frac and len(frac.group(1)) > 6:
        s = s[:frac.start()] + "." + frac.group(1)[:6] + s[frac.end():]
    try:
        d = datetime.datetime.fromisoformat(s)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    us = (d - EPOCH) // datetime.timedelta(microseconds=1)
    # a date field keeps milliseconds, rounded down (Instant.toEpochMilli)
    return us / 1000.0 if nanos else us // 1000


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def get_values(source, path, nulls=False):
    """Values of a (dotted) field in a document, arrays flattened; nulls:
    keep explicit JSON nulls (null_value replaces them)."""
    out = []

    def walk(node, parts):
        if isinstance(node, list):
            for n in node:
                walk(n, parts)
            return
        if not parts:
            if node is not None or nulls:
                out.append(node)
            return
        if not isinstance(node, dict):
            return
        for i in range(len(parts), 0, -1):
            key = ".".join(parts[:i])
            if key in node:
                walk(node[key], parts[i:])
    walk(source, path.split("."))
    return out


# ---------------------------------------------------------------- mappings

def dynamic_type(value):
    """Field mapping ES's dynamic mapping gives a JSON value."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "long"}
    if isinstance(value, float):
        return {"type": "float"}
    if isinstance(value, str):
        if DATE_RE.match(value) and "T" in value or re.fullmatch(
                r"\d{4}-\d{2}-\d{2}", value):
            return {"type": "date"}
        return {"type": "text", "fields": {"keyword": {
            "type": "keyword", "ignore_above": 256}}}
    return None


class Index:
    """One index: its mapping and documents (insertion-ordered)."""

    def __init__(self, name, mappings=None, settings=None):
        self.name = name
        # index.number_of_shards, flat or nested (index-modules.html)
        settings = settings or {}
        self.nshards = int(settings.get("number_of_shards") or (
            settings.get("index") or {}).get("number_of_shards") or 1)
        if self.nshards < 1:
            raise bad_request("Failed to parse value [%d] for setting "
                              "[index.number_of_shards] must be >= 1"
                              % self.nshards)
        # index.max_result_window, flat or nested (index-modules.html:
        # "The maximum value of from + size for searches to this index.
        # Defaults to 10000.")
        self.max_result_window = int(settings.get("max_result_window") or (
            settings.get("index") or {}).get("max_result_window") or
            MAX_RESULT_WINDOW)
        # index.max_terms_count (index-modules.html: "The maximum number of
        # terms that can be used in Terms Query. Defaults to 65536.")
        self.max_terms_count = int(settings.get("max_terms_count") or (
            settings.get("index") or {}).get("max_terms_count") or
            MAX_TERMS_COUNT)
        # {"_routing": {"required": true}} (mapping-routing-field.html)
        self.routing_required = ((mappings or {}).get("_routing") or {}).get(
            "required") in (True, "true")
        self.properties = dict((mappings or {}).get("properties", {}))
        # "runtime" fields (runtime-mapping-fields.html) are only kept and
        # returned by GET _mapping: the stand-in runs no scripts
        self.runtime = dict((mappings or {}).get("runtime", {}))
        # "dynamic": false -- new fields stay in _source, unmapped
        self.dynamic = (mappings or {}).get("dynamic", True) not in (False, "false")
        # index.mapping.ignore_malformed, flat or nested (ignore-malformed.html:
        # "can be set on the index level to ignore malformed content globally
        # across all allowed mapping types")
        flat = settings.get("index.mapping.ignore_malformed",
                            settings.get("mapping.ignore_malformed"))
        nested = (((settings.get("index") or {}).get("mapping") or
                   settings.get("mapping") or {}).get("ignore_malformed"))
        # unset, it defaults to true for index.mode logsdb (or logs):
        # elastic/elasticsearch#106822 "set ignore_malformed: true by
        # default when index.mode is logs"
        self.mode = str(settings.get("index.mode", settings.get("mode", (
            settings.get("index") or {}).get("mode")) or "standard"))
        if flat is None and nested is None:
            flat = self.mode in ("logsdb", "logs")
        self.ignore_malformed = (nested if flat is None else flat) in (True, "true")
        # the settings as GET /<index> returns them: every key under
        # "index.", every value a string (indices-get-index.html)
        self.settings = {"index.uuid": None, "index.provided_name": name,
                         "index.number_of_shards": str(self.nshards),
                         "index.number_of_replicas": "1"}
        for k, v in flat_settings(settings).items():
            k = k if k.startswith("index.") else "index." + k
            self.settings[k] = (str(v).lower() if isinstance(v, bool)
                                else str(v))
        # "_source": {"enabled": false} -- hits carry no _source
        # (mapping-source-field.html)
        self.source_enabled = ((mappings or {}).get("_source") or {}).get(
            "enabled", True) not in (False, "false")
        # documents by key (shard, _id): one _id may be on two shards
        self.docs = {}
        # key -> the JSON text of the _source as the client sent it, for
        # the documents no update has re-serialised (see RawSource)
        self.raw = {}
        self.seq = itertools.count()
        self.seq_no = itertools.count()     # _seq_no of the next write
        self.versions = {}      # key -> _seq_no of its last write
        self.ord = {}           # key -> insertion ordinal (_shard_doc)
        self.routing = {}       # key -> custom routing it was indexed with
        self.closed = False     # POST /<index>/_close
        self.blocks = {}        # index.blocks.<name> -> True
        # index_uuid of error bodies: 22 URL-safe base64 characters
        self.uuid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        self.settings["index.uuid"] = self.uuid

    def key(self, doc_id, routing=None):
        """The key (shard, _id) of the document an action with routing (or
        None: the _id routes) reaches."""
        r = doc_id if routing is None else routing
        return (zlib.crc32(str(r).encode()) % self.nshards, doc_id)

    def field_mapping(self, path):
        """The mapping of a dotted field path, or None."""
        props = self.properties
        parts = path.split(".")
        m = None
        for i, p in enumerate(parts):
            m = props.get(p)
            if m is None:
                # a multi-field: text.keyword
                if i > 0 and prev is not None and p in prev.get("fields", {}):
                    return prev["fields"][p]
                return None
            prev = m
            props = m.get("properties", {})
        return m

    def under_nested(self, path):
        """Whether a dotted field path lies inside a nested object."""
        parts = path.split(".")
        return any((self.field_mapping(".".join(parts[:i])) or {}).get("type")
                   == "nested" for i in range(1, len(parts)))

    def learn(self, source, props=None, prefix=""):
        """Dynamic mapping of new fields; raise on values that do not fit."""
        props = self.properties if props is None else props
        for key, value in source.items():
            vals = value if isinstance(value, list) else [value]
            for v in vals:
                if v is None:
                    continue
                m = props.get(key)
                if m is None and not self.dynamic:
                    continue
                if m is not None and m.get("enabled") is False:
                    continue  # kept in _source, not parsed (enabled.html)
                if isinstance(v, dict):
                    if m is None:
                        m = props[key] = {"properties": {}}
                    if m.get("type") not in (None, "object", "nested"):
                        raise mapper_error(prefix + key, m["type"], v)
                    self.learn(v, m.setdefault("properties", {}),
                               prefix + key + ".")
                    continue
                if m is None:
                    t = dynamic_type(v)
                    if t is not None:
                        props[key] = t
                    continue
                if not (self.ignores_malformed(m) and malformed(m, v)):
                    check_value(prefix + key, m, v)

    def ignores_malformed(self, m):
        """Whether a field of mapping m indexes a malformed value as none
        instead of rejecting the document (ignore-malformed.html: the
        field's "ignore_malformed", else the index setting; numeric, date,
        date_nanos and boolean fields here)."""
        if m.get("type") not in NUMBER_TYPES + ("date", "date_nanos", "boolean"):
            return False
        v = m.get("ignore_malformed")
        return self.ignore_malformed if v is None else v in (True, "true")


def mapper_error(field, ftype, value):
    return EsError(400, "mapper_parsing_exception",
                   "failed to parse field [%s] of type [%s]. Preview of "
                   "field's value: '%s'" % (field, ftype, value))


# the range of each integer type (number.html)
INTEGER_BITS = {"long": 64, "integer": 32, "short": 16, "byte": 8}


def malformed(m, v):
    """Whether v does not fit mapping m (check_value would raise)."""
    try:
        check_value("", m, v)
    except EsError:
        return True
    return False


def check_value(field, m, v):
    """Raise mapper_parsing_exception when v does not fit mapping m (an
    integer type refuses a value outside its range: "Value [3000000000] is
    out of range for an integer")."""
    t = m.get("type", "object")
    if t in ("long", "integer", "short", "byte"):
        try:
            if isinstance(v, bool) or isinstance(v, (dict, list)):
                raise ValueError
            if isinstance(v, int):
                x = v
            elif isinstance(v, str) and re.fullmatch(r"\s*[-+]?\d+\s*", v):
                x = int(v)
            else:
                x = math.trunc(float(v))
            bits = INTEGER_BITS[t]
            if not -(1 << (bits - 1)) <= x < (1 << (bits - 1)):
                raise ValueError
        except (ValueError, TypeError, OverflowError):
            raise mapper_error(field, t, v)
    elif t in ("float", "double", "half_float", "scaled_float"):
        try:
            if isinstance(v, bool):
                raise ValueError
            float(v)
        except (ValueError, TypeError):
            raise mapper_error(field, t, v)
    elif t == "boolean":
        if not (isinstance(v, bool) or v in ("true", "false", "")):
            raise mapper_error(field, t, v)
    elif t == "date":
        if parse_date(v) is None:
            raise mapper_error(field, t, v)
    elif t in ("object", "nested") and not isinstance(v, dict):
        raise EsError(400, "mapper_parsing_exception",
                      "object mapping for [%s] tried to parse field [%s] as "
                      "object, but found a concrete value" % (field, field))


# ---------------------------------------------------------------- queries

class Ctx:
    """Evaluation of one query over documents of some indices."""

    def __init__(self, indices):
        self.indices = indices

    def mapping(self, idx, field):
        return idx.field_mapping(field)

    def field_values(self, idx, src, field):
        """(kind, values) of a field: kind text|keyword|number|date|bool."""
        if field == "_id":
            return "keyword", None
        m = idx.field_mapping(field)
        base = field
        if m is not None and field.endswith(".keyword") and \
                field not in ("keyword",):
            parent = idx.field_mapping(field.rsplit(".", 1)[0])
            if parent is not None and "keyword" in parent.get("fields", {}):
                base = field.rsplit(".", 1)[0]
        if m is None or idx.under_nested(field):
            # Elasticsearch indexes no unmapped field: nothing matches it;
            # a nested object's fields only match through a nested query
            # (nested.html), which the stand-in does not have
            return "keyword", []
        vals = indexed_values(idx, src, base, m)
        t = m.get("type", "keyword")
        if idx.ignores_malformed(m):
            # "the malformed field is not indexed" (ignore-malformed.html)
            vals = [v for v in vals if not malformed(m, v)]
        if t == "text":
            return "text", vals
        if t in NUMBER_TYPES:
            return "number", [indexed_number(m, v) for v in vals]
        if t == "date":
            return "date", [parse_date(v) for v in vals]
        if t == "date_nanos":
            return "date_nanos", [parse_date(v, nanos=True) for v in vals]
        if t == "boolean":
            return "bool", [v is True or v == "true" for v in vals]
        if m is not None and "properties" in m:
            return "object", vals
        return "keyword", [normalize(m, v if isinstance(v, str) else
                                     json.dumps(v)
                                     if isinstance(v, (dict, list)) else
                                     ("true" if v is True else "false"
                                      if v is False else str(v)))
                           for v in vals]


def utf16_len(s):
    """The length Elasticsearch compares with ignore_above: a Java
    String's length, in UTF-16 code units."""
    return len(s.encode("utf-16-le")) // 2


def leaf_mappings(props, prefix=""):
    """(dotted path, mapping) of every field of a properties object,
    multi-fields included."""
    for k, m in props.items():
        path = prefix + k
        yield path, m
        for sub, sm in (m.get("fields") or {}).items():
            yield path + "." + sub, sm
        if "properties" in m:
            yield from leaf_mappings(m["properties"], path + ".")


def source_values(idx, src, path, m):
    """The values field path of mapping m takes from a document's _source,
    before ignore_above: an explicit JSON null becomes the field's
    null_value ("replace explicit null values with the specified value so
    that it can be indexed and searched", null-value.html; an empty array
    has no null to replace); a copy_to target also gets the values of the
    fields copied into it ("the original _source field will not be
    modified to show the copied values", copy-to.html)."""
    vals = get_values(src, path, nulls=True)
    nv = m.get("null_value")
    vals = [nv if v is None else v for v in vals]
    vals = [v for v in vals if v is not None]
    for other, om in leaf_mappings(idx.properties):
        targets = om.get("copy_to")
        if targets is None or other == path:
            continue
        if path in (targets if isinstance(targets, list) else [targets]):
            vals += [v for v in get_values(src, other) if v is not None]
    return vals


def indexed_values(idx, src, base, m):
    """The values a field (m: its mapping, maybe a multi-field of base)
    indexes for a document: a keyword longer than ignore_above is "not
    indexed or stored" (ignore-above.html; "the value for ignore_above is
    the character count")."""
    vals = source_values(idx, src, base, m)
    limit = m.get("ignore_above")
    if m.get("type", "keyword") == "keyword" and limit is not None:
        vals = [v for v in vals
                if not (isinstance(v, str) and utf16_len(v) > int(limit))]
    return vals


NUMBER_TYPES = ("long", "integer", "short", "byte", "float", "double",
                "half_float", "scaled_float")
FLOAT_TYPES = ("float", "double", "half_float", "scaled_float")


class SignedFloat(float):
    """A number of a floating-point field: "the double, float and
    half_float types consider that -0.0 and +0.0 are different values"
    (number.html), -0.0 comparing less than +0.0 in terms, ranges and sorts
    (Lucene orders doubles as Double.compare does)."""

    def _key(self):
        x = float(self)
        return (x, math.copysign(1.0, x) if x == 0.0 else 0.0)

    @staticmethod
    def _other(o):
        return SignedFloat(o)._key() if isinstance(o, (int, float)) else o

    def __eq__(self, o):
        return self._key() == self._other(o)

    def __ne__(self, o):
        return not self.__eq__(o)

    def __lt__(self, o):
        return self._key() < self._other(o)

    def __le__(self, o):
        return self._key() <= self._other(o)

    def __gt__(self, o):
        return self._key() > self._other(o)

    def __ge__(self, o):
        return self._key() >= self._other(o)

    def __hash__(self):
        return hash(self._key())


def exact_number(v):
    """A JSON number or numeric string as Python compares it exactly: an
    int (a long field indexes 9007199254740993, which no double holds,
    number.html) or else a float."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            pass
    return float(v)


def indexed_number(m, v):
    """The number a field of mapping m indexes for v (mapping-types.html,
    number.html: integer types truncate a fractional value (coerce), float
    is single precision, half_float half precision, scaled_float a long of
    v * scaling_factor)."""
    t = m.get("type")
    if t in ("long", "integer", "short", "byte"):
        return math.trunc(exact_number(v))
    x = float(v)
    if t == "float":
        return SignedFloat(struct.unpack("<f", struct.pack("<f", x))[0])
    if t == "half_float":
        return SignedFloat(struct.unpack("<e", struct.pack("<e", x))[0])
    if t == "scaled_float":
        f = float(m.get("scaling_factor", 1))
        return SignedFloat(math.floor(x * f + 0.5) / f)
    return SignedFloat(x)


def normalize(m, s):
    """A keyword as a field with a normalizer indexes it (normalizer.html:
    the built-in "lowercase"; others are not known here)."""
    n = (m or {}).get("normalizer")
    if n is None:
        return s
    if n != "lowercase":
        raise bad_request("the stand-in knows only the lowercase normalizer")
    return s.lower()


def coerce(kind, value, m=None):
    """A query value in the comparison domain of a field kind (m: the
    field's mapping; a number is rounded as the field indexes it, but an
    integer field compares the value itself)."""
    if kind == "number":
        if m is not None and m.get("type") in FLOAT_TYPES:
            return indexed_number(m, value)
        return exact_number(value)
    if kind in ("date", "date_nanos"):
        d = parse_date(value, nanos=kind == "date_nanos")
        if d is None:
            raise bad_request("failed to parse date field [%s]" % value,
                              "parse_exception")
        return d
    if kind == "bool":
        return value is True or value == "true"
    if kind == "text":
        return str(value).lower()
    if isinstance(value, str):
        return normalize(m, value)
    return value if isinstance(value, str) else (
        "true" if value is True else "false" if value is False
        else str(value) if not isinstance(value, float) or value != int(value)
        else str(int(value)))


def evaluate(ctx, q, idx, doc_id, src):
    """(matches, score) of query q for one document."""
    if not isinstance(q, dict) or len(q) != 1:
        raise bad_request("[_na] query malformed, must start with start_object",
                          "parsing_exception")
    (kind, body), = q.items()
    if kind == "match_all":
        return True, float(body.get("boost", 1.0)) if isinstance(body, dict) \
            else 1.0
    if kind == "match_none":
        return False, 0.0
    if kind == "bool":
        return eval_bool(ctx, body, idx, doc_id, src)
    if kind in ("term", "terms"):
        (field, val), = [(k, v) for k, v in body.items() if k != "boost"]
        if kind == "term" and isinstance(val, dict):
            val = val.get("value")
        wanted = val if kind == "terms" else [val]
        if field == "_id":
            return str(doc_id) in [str(w) for w in wanted], 1.0
        fkind, vals = ctx.field_values(idx, src, field)
        if fkind == "text":
            toks = set(itertools.chain.from_iterable(tokens(v) for v in vals))
            return any(str(w) in toks for w in wanted), 1.0
        ws = [coerce(fkind, w, idx.field_mapping(field)) for w in wanted]
        return any(v in ws for v in vals), 1.0
    if kind == "ids":
        return str(doc_id) in [str(v) for v in body.get("values", [])], 1.0
    if kind == "exists":
        fkind, vals = ctx.field_values(idx, src, body["field"])
        return bool(vals) if body["field"] != "_id" else True, 1.0
    if kind == "range":
        (field, ops), = body.items()
        fkind, vals = ctx.field_values(idx, src, field)
        if fkind == "text":
            vals = list(itertools.chain.from_iterable(tokens(v) for v in vals))
        for v in vals:
            ok = True
            for op, bound in ops.items():
                if op in ("format", "boost", "time_zone", "relation"):
                    continue
                b = coerce(fkind, bound, idx.field_mapping(field))
                # an exclusive lower bound on -0.0 excludes +0.0, an
                # exclusive upper bound on +0.0 excludes -0.0 (#22173)
                if isinstance(b, SignedFloat) and float(b) == 0.0:
                    if op == "gt":
                        b = SignedFloat(0.0)
                    elif op == "lt":
                        b = SignedFloat(-0.0)
                if op == "gt":
                    ok = ok and v > b
                elif op == "gte":
                    ok = ok and v >= b
                elif op == "lt":
                    ok = ok and v < b
                elif op == "lte":
                    ok = ok and v <= b
                else:
                    raise bad_request("[range] query does not support [%s]"
                                      % op, "parsing_exception")
            if ok:
                return True, 1.0
        return False, 0.0
    if kind == "query_string":
        return eval_lucene(ctx, body, idx, doc_id, src)
    if kind == "simple_query_string":
        return eval_query_string(ctx, body, idx, src)
    if kind == "match":
        (field, val), = body.items()
        if isinstance(val, dict):
            val = val.get("query")
        return eval_query_string(ctx, {"query": str(val),
                                       "default_field": field}, idx, src)
    raise bad_request("unknown query [%s]" % kind, "parsing_exception")


def eval_bool(ctx, body, idx, doc_id, src):
    score = 0.0
    for clause in as_list(body.get("must")):
        ok, s = evaluate(ctx, clause, idx, doc_id, src)
        if not ok:
            return False, 0.0
        score += s
    for clause in as_list(body.get("filter")):
        if not evaluate(ctx, clause, idx, doc_id, src)[0]:
            return False, 0.0
    for clause in as_list(body.get("must_not")):
        if evaluate(ctx, clause, idx, doc_id, src)[0]:
            return False, 0.0
    should = as_list(body.get("should"))
    if should:
        need = body.get("minimum_should_match")
        if need is None:
            need = 0 if body.get("must") or body.get("filter") else 1
        hit = 0
        for clause in should:
            ok, s = evaluate(ctx, clause, idx, doc_id, src)
            if ok:
                hit += 1
                score += s
        if hit < int(need):
            return False, 0.0
    return True, score


def as_list(x):
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


class QsParser:
    """query_string's Lucene syntax (query-dsl-query-string-query.html,
    "Query string syntax"): terms, "phrases", field:term, field:(group),
    (groups), AND/OR/NOT, && || !, + and - (occurrence as Lucene's classic
    QueryParser.addClause gives it), ranges field:[a TO b], {a TO b},
    field:>=a, >a, <a, <=a (* an open end), and the ^boost and ~fuzziness
    suffixes (ignored).  Not here: wildcards, regular expressions, fuzzy
    matching.  Text it cannot parse is the error Elasticsearch answers
    (QsParser.error)."""

    SPECIAL = set(' \t\n\r()[]{}"^~:\\')

    def __init__(self, text, default_and):
        self.text = text
        self.pos = 0
        self.default_and = default_and

    def error(self, what):
        """query_string on text Lucene cannot parse: 400, each shard failing
        with query_shard_exception "Failed to parse query [...]" caused by
        parse_exception "Cannot parse '...': Encountered ..."
        (QueryStringQueryParser.parse; search-search.html error body)."""
        cause = {"type": "parse_exception",
                 "reason": "Cannot parse '%s': Encountered \"%s\" at line "
                 "1, column %d." % (self.text, what, self.pos)}
        return QsError(self.text, cause)

    def skip(self):
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, s):
        self.skip()
        return self.text.startswith(s, self.pos)

    def word(self):
        """A bare term (backslash escapes a special character), or None."""
        self.skip()
        out, t = [], self.text
        while self.pos < len(t) and t[self.pos] not in self.SPECIAL:
            if t[self.pos] == "\\" and self.pos + 1 < len(t):
                self.pos += 1
            out.append(t[self.pos])
            self.pos += 1
        return "".join(out) if out else None

    def suffixes(self):
        while self.pos < len(self.text) and self.text[self.pos] in "^~":
            self.pos += 1
            while self.pos < len(self.text) and \
                    (self.text[self.pos].isdigit() or self.text[self.pos] == "."):
                self.pos += 1

    def query(self, depth=0):
        """[(occur, node)] up to the end or the ) closing depth."""
        clauses = []
        conj = None
        while True:
            self.skip()
            if self.pos >= len(self.text) or self.peek(")"):
                if conj is not None or (depth and self.pos >= len(self.text)):
                    raise self.error("<EOF>" if self.pos >= len(self.text)
                                     else ")")
                if depth == 0 and self.peek(")"):
                    raise self.error(")")
                return clauses
            op = self.operator()
            if op in ("AND", "OR"):
                if not clauses or conj is not None:
                    raise self.error(op)
                conj = op
                continue
            mods = "NOT" if op == "NOT" else None
            if mods is None and self.text[self.pos] in "+-!":
                mods = "REQ" if self.text[self.pos] == "+" else "NOT"
                self.pos += 1
            node = self.clause(depth)
            self.add(clauses, conj, mods, node)
            conj = None

    def operator(self):
        """AND, OR or NOT (also &&, ||) at the position, consumed, or None."""
        for spelling, op in (("&&", "AND"), ("||", "OR")):
            if self.text.startswith(spelling, self.pos):
                self.pos += 2
                return op
        for op in ("AND", "OR", "NOT"):
            end = self.pos + len(op)
            if self.text.startswith(op, self.pos) and (
                    end == len(self.text) or self.text[end].isspace()
                    or self.text[end] in "()\""):
                self.pos = end
                return op
        return None

    def add(self, clauses, conj, mods, node):
        """Lucene's QueryParserBase.addClause, default operator OR or AND."""
        if clauses and conj == "AND" and clauses[-1][0] != "NOT":
            clauses[-1] = ("MUST", clauses[-1][1])
        if clauses and self.default_and and conj == "OR" and \
                clauses[-1][0] != "NOT":
            clauses[-1] = ("SHOULD", clauses[-1][1])
        prohibited = mods == "NOT"
        if self.default_and:
            required = not prohibited and conj != "OR"
        else:
            required = mods == "REQ" or (conj == "AND" and not prohibited)
        clauses.append(("NOT" if prohibited else
                        "MUST" if required else "SHOULD", node))

    def clause(self, depth, field=None):
        """One clause: [field:] term, phrase, range or (group)."""
        self.skip()
        if self.pos >= len(self.text):
            raise self.error("<EOF>")
        c = self.text[self.pos]
        if c == "(":
            self.pos += 1
            sub = self.query(depth + 1)
            self.pos += 1           # the ) query() stopped at
            self.suffixes()
            return ("group", field, sub)
        if c == '"':
            end = self.pos + 1
            while end < len(self.text) and self.text[end] != '"':
                end += 2 if self.text[end] == "\\" else 1
            if end >= len(self.text):
                raise self.error("<EOF>")
            phrase = self.text[self.pos + 1:end].replace('\\"', '"')
            self.pos = end + 1
            self.suffixes()
            return ("phrase", field, phrase)
        if c in "[{":
            return self.range(field)
        if field is not None and c in "<>":
            op = "gte" if self.text.startswith(">=", self.pos) else \
                "gt" if c == ">" else \
                "lte" if self.text.startswith("<=", self.pos) else "lt"
            self.pos += 2 if op in ("gte", "lte") else 1
            w = self.word()
            if w is None:
                raise self.error("<EOF>")
            return ("range", field, {op: w})
        w = self.word()
        if w is None:
            raise self.error(c)
        if field is None and self.pos < len(self.text) and \
                self.text[self.pos] == ":":
            self.pos += 1
            return self.clause(depth, w)
        self.suffixes()
        return ("term", field, w)

    def range(self, field):
        """[a TO b] / {a TO b} (either end * for none)."""
        lo_incl = self.text[self.pos] == "["
        self.pos += 1
        lo = self.word()
        if lo is None or not self.peek("TO"):
            raise self.error("<EOF>")
        self.pos += 2
        hi = self.word()
        self.skip()
        if hi is None or self.pos >= len(self.text) or \
                self.text[self.pos] not in "]}":
            raise self.error("<EOF>")
        hi_incl = self.text[self.pos] == "]"
        self.pos += 1
        ops = {}
        if lo != "*":
            ops["gte" if lo_incl else "gt"] = lo
        if hi != "*":
            ops["lte" if hi_incl else "lt"] = hi
        return ("range", field, ops)


class QsError(EsError):
    """A query_string Elasticsearch could not parse (QsParser.error)."""

    def __init__(self, text, cause):
        shard = {"type": "query_shard_exception",
                 "reason": "Failed to parse query [%s]" % text}
        super().__init__(400, "search_phase_execution_exception",
                         "all shards failed", phase="query", grouped=True,
                         failed_shards=[{"shard": 0, "index": None,
                                         "reason": dict(shard,
                                                        caused_by=cause)}])
        self.root = [shard]


def check_query_strings(q, indices):
    """Parse every query_string of query q, so that one Lucene cannot parse
    fails the search whether or not any document is there to match."""
    if isinstance(q, list):
        for e in q:
            check_query_strings(e, indices)
    elif isinstance(q, dict):
        for k, v in q.items():
            if k == "query_string" and isinstance(v, dict):
                try:
                    QsParser(str(v.get("query", "")), False).query()
                except QsError as e:
                    name = indices[0].name if indices else None
                    e.extra["failed_shards"][0]["index"] = name
                    e.root[0]["index"] = name
                    raise
            else:
                check_query_strings(v, indices)


def eval_lucene(ctx, body, idx, doc_id, src):
    """(matches, score) of a query_string query (QsParser) for a document;
    a query that parses to nothing matches nothing."""
    parser = QsParser(str(body.get("query", "")),
                      str(body.get("default_operator", "OR")).upper() == "AND")
    clauses = parser.query()
    if not clauses:
        return False, 0.0
    return eval_clauses(ctx, clauses, body.get("default_field"), idx,
                        doc_id, src)


def eval_clauses(ctx, clauses, field, idx, doc_id, src):
    """A Lucene boolean query: every MUST, no NOT, and one SHOULD when there
    is no MUST; only NOT clauses match every other document (Elasticsearch
    adds a match_all to a purely negative query string)."""
    score, any_should, should_hit = 0.0, False, False
    for occur, node in clauses:
        ok, s = eval_node(ctx, node, field, idx, doc_id, src)
        if occur == "NOT":
            if ok:
                return False, 0.0
            continue
        if occur == "MUST" and not ok:
            return False, 0.0
        if occur == "SHOULD":
            any_should = True
            should_hit = should_hit or ok
        if ok:
            score += s
    if any_should and not should_hit and \
            not any(o == "MUST" for o, _ in clauses):
        return False, 0.0
    return True, score if score else 1.0


def eval_node(ctx, node, field, idx, doc_id, src):
    """(matches, score) of one parsed query_string clause."""
    kind, f, arg = node
    f = f or field
    if kind == "group":
        return eval_clauses(ctx, arg, f, idx, doc_id, src)
    if kind == "range":
        fields = [f] if f and f != "*" else searchable_fields(idx.properties)
        for name in fields:
            if evaluate(ctx, {"range": {name: arg}}, idx, doc_id, src)[0]:
                return True, 1.0
        return False, 0.0
    return match_words(ctx, idx, src, f, tokens(arg), kind == "phrase")


QS_RE = re.compile(r'\s*([+-]?)(?:(\w[\w.]*):)?("([^"]*)"|[^\s()"]+)')


def eval_query_string(ctx, body, idx, src):
    """query_string subset: terms, "phrases", field:term, AND/OR/NOT, +/-."""
    text = body.get("query", "")
    default_field = body.get("default_field")
    if "default_operator" in body:
        and_default = str(body["default_operator"]).upper() == "AND"
    else:
        and_default = False
    clauses = []           # (required, prohibited, matched, score)
    pending_op = None
    negate_next = False
    pos = 0
    while pos < len(text):
        m = QS_RE.match(text, pos)
        if not m:
            break
        pos = m.end()
        sign, field, whole, phrase = m.group(1), m.group(2), m.group(3), \
            m.group(4)
        if not sign and not field and whole in ("AND", "OR", "NOT", "&&",
                                                "||", "!"):
            if whole in ("NOT", "!"):
                negate_next = True
            else:
                pending_op = "AND" if whole in ("AND", "&&") else "OR"
            continue
        words = tokens(phrase if phrase is not None else whole)
        matched, score = match_words(ctx, idx, src, field or default_field,
                                     words, phrase is not None)
        req = sign == "+" or and_default
        proh = sign == "-" or negate_next
        if pending_op == "AND" and clauses:
            prev = clauses[-1]
            clauses[-1] = (True, prev[1], prev[2], prev[3])
            req = True
        clauses.append((req and not proh, proh, matched, score))
        pending_op = None
        negate_next = False
    if not clauses:
        return False, 0.0
    score = 0.0
    any_optional = False
    optional_hit = False
    for req, proh, matched, s in clauses:
        if proh:
            if matched:
                return False, 0.0
            continue
        if req and not matched:
            return False, 0.0
        if not req:
            any_optional = True
            optional_hit = optional_hit or matched
        if matched:
            score += s
    if any_optional and not optional_hit and not any(
            c[0] for c in clauses):
        return False, 0.0
    if all(c[1] for c in clauses):
        return True, 1.0
    return True, score


def match_words(ctx, idx, src, field, words, phrase):
    """Whether words (a phrase when phrase) occur in field or any field."""
    if not words:
        return False, 0.0
    fields = [field] if field and field != "*" else \
        searchable_fields(idx.properties)
    score = 0.0
    hit = False
    for f in fields:
        kind, vals = ctx.field_values(idx, src, f)
        for v in vals:
            if kind == "keyword":
                if not phrase and len(words) == 1 and str(v).lower() == \
                        words[0]:
                    hit = True
                    score += 1.0
                continue
            if kind != "text":
                continue
            toks = tokens(v)
            if phrase:
                n = len(words)
                c = sum(1 for i in range(len(toks) - n + 1)
                        if toks[i:i + n] == words)
            else:
                c = sum(toks.count(w) for w in words)
                if c and not all(w in toks for w in words) and len(words) > 1:
                    c = sum(toks.count(w) for w in words)
            if c:
                hit = True
                score += c / (1.0 + 0.1 * len(toks))
    return hit, round(score, 6)


def searchable_fields(props, prefix=""):
    out = []
    for k, m in props.items():
        if "properties" in m:
            out += searchable_fields(m["properties"], prefix + k + ".")
        elif m.get("type") in ("text", "keyword"):
            out.append(prefix + k)
    return out


# ---------------------------------------------------------------- sorting

class Desc:
    """Wraps a sort key so that it sorts in reverse."""
    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __lt__(self, other):
        return other.v < self.v

    def __eq__(self, other):
        return self.v == other.v


def parse_sort(sort):
    """[(field, desc, missing_first)] of a sort spec."""
    out = []
    for s in as_list(sort):
        if isinstance(s, str):
            field, order = s, ("desc" if s == "_score" else "asc")
        else:
            (field, spec), = s.items()
            order = spec if isinstance(spec, str) else spec.get(
                "order", "desc" if field == "_score" else "asc")
            missing = None if isinstance(spec, str) else spec.get("missing")
            if missing not in (None, "_first", "_last"):
                raise bad_request("missing value [%s] is not supported by "
                                  "the stand-in" % missing)
            if missing == "_first":
                out.append((field, order == "desc", True))
                continue
        out.append((field, order == "desc"))
    return out


def sort_value(ctx, idx, field, hit):
    """(key for ordering, value reported in hit.sort) of one sort field."""
    if field == "_score":
        return hit["_score"], hit["_score"]
    if field in ("_doc", "_shard_doc"):
        return hit["_ord"], hit["_ord"]
    if field == "_id":
        return hit["_id"], hit["_id"]
    m = idx.field_mapping(field)
    if m is None:
        raise EsError(400, "search_phase_execution_exception",
                      "all shards failed", phase="query", grouped=True,
                      failed_shards=[{"shard": 0, "index": idx.name,
                                      "reason": {
                                          "type": "query_shard_exception",
                                          "reason": "No mapping found for "
                                          "[%s] in order to sort on" % field}}])
    if m.get("type") == "text":
        raise EsError(400, "illegal_argument_exception",
                      "Fielddata is disabled on [%s] in [%s]. Text fields are "
                      "not optimised for operations that require per-document "
                      "field data like aggregations and sorting, so these "
                      "operations are disabled by default. Please use a "
                      "keyword field instead." % (field, idx.name))
    kind, vals = ctx.field_values(idx, hit["_source"], field)
    if not vals:
        return None, None
    v = min(vals)
    if kind == "number":
        t = (m or {}).get("type", "float")
        rep = int(v) if t in ("long", "integer", "short", "byte") else v
        return v, rep
    if kind == "bool":
        return int(v), int(v)
    return v, v


def order_key(specs, keys):
    """Comparable tuple for sort keys; missing values sort last, or first
    with "missing": "_first" (sort-search-results.html)."""
    out = []
    for (field, desc, *first), k in zip(specs, keys):
        missing = k is None
        out.append(((0 if missing else 1) if first else (1 if missing else 0),
                    0 if missing else (Desc(k) if desc else k)))
    return tuple(out)


# ---------------------------------------------------------------- state

class State:
    def __init__(self, args):
        self.args = args
        self.indices = {}
        self.pits = {}
        self.scrolls = {}
        self.faults = []
        self.item_faults = {}  # _id -> status, for the _bulk request running
        self.requests = 0
        self.counts = {}
        self.log = []
        self.aliases = {}  # alias -> {index name: is_write_index or None}
        self.auto_create = True  # action.auto_create_index

    def readable(self, expr):
        """The indices a search, count or PIT of expr reads: a closed index
        named (or behind an alias) is index_closed_exception, a wildcard
        skips closed indices (expand_wildcards "open")."""
        out = []
        for part in expr.split(","):
            part = part.strip()
            wild = part in ("_all", "*") or "*" in part
            for idx in self.resolve(part):
                if not idx.closed:
                    out.append(idx)
                elif not wild:
                    raise index_closed(idx)
        seen = set()
        return [i for i in out if not (i.name in seen or seen.add(i.name))]

    def resolve(self, expr, allow_missing=False):
        """Indices named by a comma-separated list with wildcards."""
        out = []
        for part in expr.split(","):
            part = part.strip()
            if part in ("_all", "*"):
                out += sorted(self.indices)
                continue
            if "*" in part:
                rx = re.compile("^" + re.escape(part).replace(r"\*", ".*")
                                + "$")
                out += sorted(n for n in self.indices if rx.match(n))
                continue
            if part in self.aliases:
                out += sorted(self.aliases[part])
                continue
            if part not in self.indices:
                if allow_missing:
                    continue
                raise index_not_found(part)
            out.append(part)
        seen = set()
        return [self.indices[n] for n in out if not (n in seen or seen.add(n))]

    def write_index(self, name):
        """The concrete index a write addressed to name goes to (aliases.html,
        "Write index"): name itself, or the write index of the alias name."""
        if "*" in name or "," in name:
            raise EsError(400, "invalid_index_name_exception",
                          "Invalid index name [%s], must not contain the "
                          "following characters [ , \", *, \\, <, |, ,, >, "
                          "/, ?]" % name, index=name)
        members = self.aliases.get(name)
        if members is None:
            return name
        writers = [n for n, w in members.items() if w]
        if not writers and len(members) == 1 and \
                list(members.values())[0] is None:
            writers = list(members)
        if len(writers) != 1:
            raise bad_request(
                "no write index is defined for alias [%s]. The write index "
                "may be explicitly disabled using is_write_index=false or "
                "the alias points to multiple indices without one being "
                "designated as a write index" % name)
        return writers[0]

    def add_alias(self, index_expr, alias, is_write_index):
        """Add the indices index_expr names to alias; one write index at
        most (indices-aliases.html, "is_write_index")."""
        if alias in self.indices:
            raise bad_request("an index or data stream exists with the same "
                              "name as the alias [%s]" % alias,
                              "invalid_alias_name_exception")
        members = self.aliases.setdefault(alias, {})
        for idx in self.resolve(index_expr):
            if is_write_index:
                for n in members:
                    members[n] = False if members[n] else members[n]
            members[idx.name] = is_write_index


def update_aliases(body):
    """POST /_aliases: the actions apply atomically, in order
    (indices-aliases.html: "add", and "remove", which takes the indices
    index names out of alias; a missing alias is 404
    aliases_not_found_exception), so an alias swapped from one index to
    another is never seen pointing at neither."""
    actions = (body or {}).get("actions", [])
    for action in actions:
        (op, a), = action.items()
        if op not in ("add", "remove"):
            raise bad_request("unsupported alias action [%s]" % op)
        if op == "remove" and a["alias"] not in STATE.aliases:
            raise EsError(404, "aliases_not_found_exception",
                          "aliases [%s] missing" % a["alias"],
                          **{"resource.type": "aliases",
                             "resource.id": a["alias"]})
    for action in actions:
        (op, a), = action.items()
        if op == "add":
            STATE.add_alias(a["index"], a["alias"], a.get("is_write_index"))
            continue
        members = STATE.aliases[a["alias"]]
        for idx in STATE.resolve(a["index"]):
            members.pop(idx.name, None)
        if not members:
            del STATE.aliases[a["alias"]]
    return 200, {"acknowledged": True}


STATE = None


def info():
    a = STATE.args
    if a.distribution == "opensearch":
        return {"name": "standin", "cluster_name": "pgpoly-standin",
                "cluster_uuid": "standin-0000",
                "version": {"distribution": "opensearch",
                            "number": a.version, "build_type": "tar",
                            "lucene_version": "9.7.0",
                            "minimum_wire_compatibility_version": "7.10.0",
                            "minimum_index_compatibility_version": "7.0.0"},
                "tagline": "The OpenSearch Project: https://opensearch.org/"}
    return {"name": "standin", "cluster_name": "pgpoly-standin",
            "cluster_uuid": "standin-0000",
            "version": {"number": a.version, "build_flavor": "default",
                        "build_type": "tar", "lucene_version": "9.8.0",
                        "minimum_wire_compatibility_version": "7.17.0",
                        "minimum_index_compatibility_version": "7.0.0"},
            "tagline": "You Know, for Search"}


def shards():
    return {"total": 1, "successful": 1, "skipped": 0, "failed": 0}


def create_index(name, body):
    if name in STATE.indices:
        raise EsError(400, "resource_already_exists_exception",
                      "index [%s/standin] already exists" % name,
                      index=name)
    if name != name.lower() or name.startswith(("_", "-", "+")):
        raise EsError(400, "invalid_index_name_exception",
                      "Invalid index name [%s], must be lowercase" % name,
                      index=name)
    STATE.indices[name] = Index(name, (body or {}).get("mappings"),
                                (body or {}).get("settings"))
    return 200, {"acknowledged": True, "shards_acknowledged": True,
                 "index": name}


def delete_index(expr):
    for idx in STATE.resolve(expr):
        del STATE.indices[idx.name]
        for members in STATE.aliases.values():
            members.pop(idx.name, None)
    return 200, {"acknowledged": True}


def close_index(expr, closed):
    """POST /<index>/_close and _open (indices-close.html,
    indices-open-close.html)."""
    indices = STATE.resolve(expr)
    for idx in indices:
        idx.closed = closed
    if not closed:
        return 200, {"acknowledged": True, "shards_acknowledged": True}
    return 200, {"acknowledged": True, "shards_acknowledged": True,
                 "indices": {i.name: {"closed": True} for i in indices}}


def flat_settings(body, prefix=""):
    out = {}
    for k, v in (body or {}).items():
        if isinstance(v, dict):
            out.update(flat_settings(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def update_settings(expr, body):
    """PUT /<index>/_settings (indices-update-settings.html): the index
    blocks only (index-modules-blocks.html)."""
    settings = flat_settings(body)
    for k, v in settings.items():
        name = k[len("index.blocks."):] if k.startswith("index.blocks.") else None
        if name not in WRITE_BLOCKS:
            raise bad_request("standin: unsupported setting [%s]" % k)
    for idx in STATE.resolve(expr):
        for k, v in settings.items():
            idx.blocks[k[len("index.blocks."):]] = v in (True, "true")
    return 200, {"acknowledged": True}


def cluster_settings(body):
    """PUT /_cluster/settings (cluster-update-settings.html):
    action.auto_create_index only."""
    for scope in ("persistent", "transient"):
        for k, v in flat_settings((body or {}).get(scope)).items():
            if k != "action.auto_create_index":
                raise bad_request("standin: unsupported setting [%s]" % k)
            STATE.auto_create = v not in (False, "false")
    return 200, {"acknowledged": True, "persistent": {}, "transient": {}}


def index_mapping(idx):
    m = {"properties": idx.properties} if idx.properties else {}
    if idx.runtime:
        m["runtime"] = idx.runtime
    if idx.routing_required:
        m = dict({"_routing": {"required": True}}, **m)
    return m


def get_mapping(expr):
    out = {}
    for idx in STATE.resolve(expr, allow_missing="*" in expr):
        out[idx.name] = {"mappings": index_mapping(idx)}
    return 200, out


# Defaults GET /<index>?include_defaults=true reports for settings an index
# does not set (a few of the many index-modules.html lists).
INDEX_DEFAULTS = {"index.mapping.ignore_malformed": "false",
                  "index.max_result_window": "10000",
                  "index.refresh_interval": "1s"}


def nest_settings(flat):
    """{"index.a.b": v} -> {"index": {"a": {"b": v}}} (flat_settings=false)."""
    out = {}
    for k, v in flat.items():
        d = out
        parts = k.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return out


def get_index(expr, params):
    """GET /<index> (indices-get-index.html): each index's aliases,
    mappings and settings; "defaults" with include_defaults=true."""
    out = {}
    for idx in STATE.resolve(expr, allow_missing="*" in expr):
        aliases = {a: ({"is_write_index": True} if m[idx.name] else {})
                   for a, m in STATE.aliases.items() if idx.name in m}
        out[idx.name] = {"aliases": aliases, "mappings": index_mapping(idx),
                         "settings": nest_settings(idx.settings)}
        if params.get("include_defaults") == "true":
            defaults = dict(INDEX_DEFAULTS, **{
                "index.mapping.ignore_malformed": str(idx.ignore_malformed).lower()})
            out[idx.name]["defaults"] = nest_settings(
                {k: v for k, v in defaults.items() if k not in idx.settings})
    return 200, out


def filter_response(obj, spec):
    """filter_path (common-options.html, "Response filtering"): keep the
    values at the comma-separated dotted paths, where * matches one key
    and ** any number of levels; a matched value is kept whole, an object
    left with nothing matched is dropped."""
    def walk(o, paths):
        if isinstance(o, RawSource):
            o = o.value     # filtering parses the source (RawSource)
        if isinstance(o, list):
            kept = [walk(e, paths) for e in o]
            return [e for e in kept if e is not None] or None
        if not isinstance(o, dict):
            return None
        out = {}
        for k, v in o.items():
            rest, whole = [], False
            for p in paths:
                if not p:
                    continue
                if p[0] == "**":
                    rest.append(p)          # ** spans this level too
                    if len(p) > 1 and fnmatch.fnmatchcase(k, p[1]):
                        whole = whole or len(p) == 2
                        rest.append(p[2:])
                elif fnmatch.fnmatchcase(k, p[0]):
                    whole = whole or len(p) == 1
                    rest.append(p[1:])
            if whole:
                out[k] = v.value if isinstance(v, RawSource) else v
            elif rest:
                sub = walk(v, rest)
                if sub:
                    out[k] = sub
        return out or None
    return walk(obj, [p.split(".") for p in spec.split(",") if p]) or {}


class RawSource:
    """A document's _source as the JSON text the client indexed.

    Elasticsearch keeps _source as the bytes it was sent and returns them
    verbatim ("The _source field contains the original JSON document body
    that was passed at index time", mapping-source-field.html); only when it
    parses the source -- source filtering, filter_path, an update's merge
    (docs-update.html: it "gets the document ..., runs the specified script,
    and indexes the result") -- does it write it again, and that parse
    "round-trips floating-point-like numbers (i.e. those that contain . or
    e) via IEEE754 doubles, which is a lossy conversion" while integers keep
    every digit (elastic/elasticsearch#40202).  Python's json module parses
    the same way (float for a fraction or exponent, int otherwise), so the
    parsed value (value) is what such a re-serialisation writes; only the
    spelling of a double differs (Python's 1e+20, Java's 1.0E20: the same
    number)."""

    def __init__(self, text, value):
        self.text = text
        self.value = value


def encode(obj):
    """The JSON text of a response that may hold RawSource values."""
    if isinstance(obj, RawSource):
        return obj.text
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(k) + ":" + encode(v)
                              for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(encode(v) for v in obj) + "]"
    return json.dumps(obj)


def doc_source(idx, key):
    """A document's _source to return whole: its text as indexed when no
    update has re-serialised it (RawSource), else the parsed value."""
    raw = idx.raw.get(key)
    src = idx.docs[key]
    return RawSource(raw, src) if raw is not None else src


def filter_source(src, spec):
    """_source filtering: False, True, [paths], {"includes": [...]}; a
    RawSource is returned as it is only unfiltered."""
    if spec is None or spec is True:
        return src
    if isinstance(src, RawSource):
        src = src.value
    if spec is False:
        return None
    if isinstance(spec, str):
        spec = [spec]
    includes = spec if isinstance(spec, list) else spec.get("includes", [])
    if not includes:
        return src
    out = {}
    for path in includes:
        copy_path(src, out, path)
    return out


def copy_path(src, dst, path):
    # Elasticsearch filters on each value's full dotted path: the key "o.p"
    # and {"o": {"p": ..}} are both o.p, both kept.
    if path in src:
        dst[path] = src[path]
    if path.endswith("*"):
        for k in src:
            if k.startswith(path[:-1]):
                dst[k] = src[k]
        return
    for k, v in src.items():
        if path.startswith(k + ".") and isinstance(v, dict):
            sub = dst.setdefault(k, {})
            if isinstance(sub, dict):
                copy_path(v, sub, path[len(k) + 1:])
            if not sub:
                del dst[k]
        elif path.startswith(k + ".") and isinstance(v, list):
            # An array of objects keeps its shape, each object filtered.
            subs = dst.get(k)
            if not isinstance(subs, list) or len(subs) != len(v):
                subs = [{} for _ in v]
            for elem, sub in zip(v, subs):
                if isinstance(elem, dict) and isinstance(sub, dict):
                    copy_path(elem, sub, path[len(k) + 1:])
            if any(subs):
                dst[k] = subs


def check_terms_count(indices, query):
    """The 400 Elasticsearch answers for a terms query of more values than
    an index's max_terms_count (TermsQueryBuilder.doToQuery), each terms
    query counted alone."""
    limit = min([i.max_terms_count for i in indices] or [MAX_TERMS_COUNT])
    stack = [query]
    while stack:
        q = stack.pop()
        if isinstance(q, list):
            stack.extend(q)
        elif isinstance(q, dict):
            terms = q.get("terms")
            if isinstance(terms, dict):
                for k, v in terms.items():
                    if k != "boost" and isinstance(v, list) and len(v) > limit:
                        raise EsError(
                            400, "search_phase_execution_exception",
                            "all shards failed", phase="query", grouped=True,
                            failed_shards=[{"shard": 0, "index": None, "reason": {
                                "type": "illegal_argument_exception",
                                "reason": "The number of terms [%d] used in the "
                                "Terms Query request has exceeded the allowed "
                                "maximum of [%d]. This maximum can be set by "
                                "changing the [index.max_terms_count] index "
                                "level setting." % (len(v), limit)}}])
            stack.extend(q.values())


def matching_hits(indices, docs, query, need_score):
    """Hits (dicts) of the documents matching query."""
    check_terms_count(indices, query)
    ctx = Ctx(indices)
    hits = []
    check_query_strings(query, indices)
    for idx, doc_id, src, ordv, seq_no, routing, raw in docs:
        if query is None:
            ok, score = True, 1.0
        else:
            ok, score = evaluate(ctx, query, idx, doc_id, src)
        if ok:
            hits.append({"_index": idx.name, "_id": doc_id,
                         "_score": score, "_source": src, "_ord": ordv,
                         "_idx": idx, "_seq_no": seq_no,
                         "_routing": routing, "_raw": raw})
    return hits


def live_docs(indices):
    out = []
    for idx in indices:
        for key, src in idx.docs.items():
            out.append((idx, key[1], src, idx.ord[key], idx.versions[key],
                        idx.routing.get(key), idx.raw.get(key)))
    return out


def search(index_expr, body, params):
    body = body or {}
    for k in body:
        if k not in ("query", "sort", "size", "from", "search_after", "pit",
                     "_source", "track_total_hits", "track_scores",
                     "timeout", "seq_no_primary_term", "version"):
            raise bad_request("Unknown key for a START_OBJECT in [%s]." % k,
                              "parsing_exception")
    size = int(params.get("size", body.get("size", 10)))
    frm = int(params.get("from", body.get("from", 0)))
    scroll = params.get("scroll")
    pit = body.get("pit")
    if pit is not None:
        if index_expr is not None:
            raise bad_request("[indices] cannot be used with point in time. "
                              "Do not specify any index with point in time.",
                              "action_request_validation_exception")
        p = STATE.pits.get(pit.get("id"))
        if p is None:
            raise EsError(404, "search_context_missing_exception",
                          "No search context found for id [%s]"
                          % pit.get("id"))
        p["expires"] = time.monotonic() + 300
        docs, indices = p["docs"], p["indices"]
    else:
        indices = STATE.readable(index_expr or "_all")
        docs = live_docs(indices)
    window = min([i.max_result_window for i in indices] or [MAX_RESULT_WINDOW])
    if scroll is None and frm + size > window:
        raise EsError(400, "search_phase_execution_exception",
                      "all shards failed", phase="query", grouped=True,
                      failed_shards=[{"shard": 0, "index": None,
                                      "reason": {
                                          "type": "illegal_argument_exception",
                                          "reason": result_window(frm, size, window)}}])
    if "search_after" in body and frm > 0:
        raise bad_request("`from` parameter must be set to 0 when "
                          "`search_after` is used.",
                          "action_request_validation_exception")
    specs = parse_sort(body.get("sort"))
    osv = os_version()
    if osv is not None and osv < (3, 3) and \
            any(f == "_shard_doc" for f, *_ in specs):
        raise EsError(400, "search_phase_execution_exception",
                      "all shards failed", phase="query", grouped=True,
                      failed_shards=[{"shard": 0, "index": index_expr,
                                      "reason": {
                                          "type": "query_shard_exception",
                                          "reason": "No mapping found for "
                                          "[_shard_doc] in order to sort on"}}])
    if osv is None and pit is not None and specs and \
            specs[-1][0] not in ("_shard_doc",):
        # Elasticsearch >= 7.12 adds the _shard_doc tiebreaker itself;
        # OpenSearch does not.
        specs = specs + [("_shard_doc", False)]
    want_score = not specs or any(f == "_score" for f, *_ in specs) or \
        body.get("track_scores")
    hits = cached_hits(pit, indices, docs, body.get("query"), specs)
    total = len(hits)
    if "search_after" in body:
        after = body["search_after"]
        if len(after) != len(specs):
            raise bad_request("search_after has %d value(s) but sort has "
                              "%d." % (len(after), len(specs)))
        key = order_key(specs, [None if v is None else
                                (parse_date(v) if isinstance(v, str) and
                                 False else v) for v in after])
        keys = [h["_key"] for h in hits]
        start = bisect.bisect_right(keys, key)
        page = hits[start:start + size]
    elif scroll is not None:
        sid = base64.b64encode(uuid.uuid4().bytes).decode()
        # a scroll page is "the next batch of results for the request"
        # (scroll-api.html): rendered as the search asked (_source,
        # seq_no_primary_term, sort, scores)
        STATE.scrolls[sid] = {"hits": hits, "pos": size, "size": size,
                              "body": body, "specs": specs,
                              "want_score": want_score,
                              "expires": time.monotonic() + 300}
        page = hits[:size]
    else:
        page = hits[frm:frm + size]
    resp = {"took": 1, "timed_out": False, "_shards": shards(),
            "hits": render_hits(page, total, body, specs, want_score)}
    if pit is not None:
        resp = dict({"pit_id": pit["id"]}, **resp)
    if scroll is not None:
        resp = dict({"_scroll_id": sid}, **resp)
    return 200, resp


def result_window(frm, size, window=MAX_RESULT_WINDOW):
    return ("Result window is too large, from + size must be less than or "
            "equal to: [%d] but was [%d]. See the scroll api for a more "
            "efficient way to request large data sets. This limit can be set "
            "by changing the [index.max_result_window] index level setting."
            % (window, frm + size))


def cached_hits(pit, indices, docs, query, specs):
    """Sorted hits; a PIT caches them per (query, sort) for paging."""
    ck = json.dumps([query, specs], sort_keys=True)
    if pit is not None:
        p = STATE.pits[pit["id"]]
        if p.get("ck") == ck:
            return p["hits"]
    hits = matching_hits(indices, docs, query, True)
    if specs:
        ctx = Ctx(indices)
        for h in hits:
            vals = [sort_value(ctx, h["_idx"], f, h) for f, *_ in specs]
            h["_key"] = order_key(specs, [v[0] for v in vals])
            h["_sort"] = [v[1] for v in vals]
        hits.sort(key=lambda h: h["_key"])
    else:
        hits.sort(key=lambda h: (-h["_score"], h["_ord"]))
    if pit is not None:
        p["ck"], p["hits"] = ck, hits
    return hits


def render_hits(page, total, body, specs, want_score):
    tth = body.get("track_total_hits", MAX_RESULT_WINDOW)
    out = {}
    if tth is not False:
        limit = MAX_RESULT_WINDOW if tth is True is False else (
            None if tth is True else int(tth))
        if limit is not None and total > limit:
            out["total"] = {"value": limit, "relation": "gte"}
        else:
            out["total"] = {"value": total, "relation": "eq"}
    scores = [h["_score"] for h in page] if want_score else []
    out["max_score"] = max(scores) if scores else None
    hs = []
    spec = body.get("_source")
    for h in page:
        d = {"_index": h["_index"], "_id": h["_id"],
             "_score": h["_score"] if want_score else None}
        if h["_routing"] is not None:
            # a hit's metadata carries the custom routing of its document
            d["_routing"] = h["_routing"]
        if body.get("seq_no_primary_term") is True:
            d["_seq_no"], d["_primary_term"] = h["_seq_no"], PRIMARY_TERM
        whole = h["_source"] if h["_raw"] is None else \
            RawSource(h["_raw"], h["_source"])
        src = filter_source(whole, spec) \
            if h["_idx"].source_enabled else None
        if src is not None:
            d["_source"] = src
        if specs:
            d["sort"] = h["_sort"]
        hs.append(d)
    out["hits"] = hs
    return out


def scroll_next(body, params):
    sid = (body or {}).get("scroll_id") or params.get("scroll_id")
    s = STATE.scrolls.get(sid)
    if s is None:
        raise EsError(404, "search_context_missing_exception",
                      "No search context found for id [%s]" % sid)
    page = s["hits"][s["pos"]:s["pos"] + s["size"]]
    s["pos"] += s["size"]
    return 200, {"_scroll_id": sid, "took": 1, "timed_out": False,
                 "_shards": shards(),
                 "hits": render_hits(page, len(s["hits"]), s["body"], s["specs"],
                                     s["want_score"])}


def clear_scroll(body):
    ids = as_list((body or {}).get("scroll_id"))
    freed = 0
    for sid in ids:
        if STATE.scrolls.pop(sid, None) is not None:
            freed += 1
    return (200 if freed == len(ids) else 404), {"succeeded": True,
                                                 "num_freed": freed}


def os_version():
    """(major, minor) of an OpenSearch stand-in, or None for Elasticsearch."""
    if STATE.args.distribution != "opensearch":
        return None
    m = re.match(r"(\d+)\.(\d+)", STATE.args.version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def os_has_pit():
    """OpenSearch's own PIT API: 2.4 and later (not a 7.x compat number)."""
    v = os_version()
    return v is not None and (2, 4) <= v < (7, 0)


def no_handler(method, path):
    return bad_request("no handler found for uri [%s] and method [%s]"
                       % (path, method))


def os_create_pit(expr, params):
    """POST /<index>/_search/point_in_time (OpenSearch >= 2.4)."""
    if "keep_alive" not in params:
        raise bad_request("Validation Failed: 1: keep alive not specified;",
                          "action_request_validation_exception")
    indices = STATE.readable(expr)
    pid = base64.b64encode(uuid.uuid4().bytes * 2).decode()
    STATE.pits[pid] = {"docs": live_docs(indices), "indices": indices,
                       "expires": time.monotonic() + 300}
    return 200, {"pit_id": pid, "_shards": shards(),
                 "creation_time": int(time.time() * 1000)}


def os_delete_pits(body):
    """DELETE /_search/point_in_time {"pit_id": [...]} (OpenSearch >= 2.4)."""
    ids = as_list((body or {}).get("pit_id"))
    if not ids:
        raise bad_request("Validation Failed: 1: no pit ids specified;",
                          "action_request_validation_exception")
    pits = [{"successful": STATE.pits.pop(pid, None) is not None,
             "pit_id": pid} for pid in ids]
    return 200, {"pits": pits}


def open_pit(expr, params):
    if STATE.args.distribution == "opensearch":
        raise bad_request("no handler found for uri [/%s/_pit] and method "
                          "[POST]" % expr)
    if "keep_alive" not in params:
        raise bad_request("[keep_alive] is required",
                          "action_request_validation_exception")
    indices = STATE.readable(expr)
    pid = base64.b64encode(uuid.uuid4().bytes * 2).decode()
    docs = live_docs(indices)
    STATE.pits[pid] = {"docs": docs, "indices": indices,
                       "expires": time.monotonic() + 300}
    return 200, {"id": pid}


def close_pit(body):
    """DELETE /_pit {"id": "..."}: 200 {"succeeded": true, "num_freed": n}
    (n: the search contexts closed), as the close point in time API says
    (https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-close-point-in-time,
    point-in-time-api.html#close-point-in-time-api); a PIT already closed
    or expired frees nothing, which Elasticsearch answers with 404 (its
    ClosePointInTimeResponse status when num_freed is 0)."""
    pid = (body or {}).get("id")
    if STATE.pits.pop(pid, None) is None:
        return 404, {"succeeded": True, "num_freed": 0}
    return 200, {"succeeded": True, "num_freed": 1}


def count(expr, body):
    indices = STATE.readable(expr or "_all")
    q = (body or {}).get("query")
    n = len(matching_hits(indices, live_docs(indices), q, False))
    return 200, {"count": n, "_shards": shards()}


def mget_index(iname):
    """The one index a multi-get addressed to iname reads, or the EsError
    of each of its documents: a missing index, or an alias of several
    indices ("alias [...] has more than one index associated with it [...],
    can't execute a single index op", illegal_argument_exception: a get
    reads one shard of one index), or a closed index."""
    if iname in STATE.aliases:
        members = sorted(STATE.aliases[iname])
        if len(members) == 1:
            idx = STATE.indices[members[0]]
            return index_closed(idx) if idx.closed else idx
        return EsError(400, "illegal_argument_exception",
                       "alias [%s] has more than one index associated with it "
                       "[%s], can't execute a single index op"
                       % (iname, ", ".join(members)))
    idx = STATE.indices.get(iname)
    if idx is None:
        return index_not_found(iname)
    return index_closed(idx) if idx.closed else idx


def mget(iname, body, params):
    """Multi-get by ids in one index (docs-multi-get.html): "ids", or
    "docs" of {"_id", "routing"}; found or not, per document, in order.
    A document lives on the shard its routing (or else its _id) names."""
    body = body or {}
    if isinstance(body.get("docs"), list):
        wanted = [(str(d.get("_id")), d.get("routing") or None) for d in body["docs"]]
    elif isinstance(body.get("ids"), list):
        wanted = [(str(i), None) for i in body["ids"]]
    else:
        raise bad_request("Validation Failed: 1: no documents to get;",
                          "action_request_validation_exception")
    idx = mget_index(iname)
    docs = []
    for doc_id, routing in wanted:
        if isinstance(idx, EsError):
            docs.append({"_index": iname, "_id": doc_id,
                         "error": idx.body()["error"]})
            continue
        if routing is None and idx.routing_required:
            e = EsError(400, "routing_missing_exception",
                        "routing is required for [%s]/[%s]" % (idx.name, doc_id))
            docs.append({"_index": idx.name, "_id": doc_id,
                         "error": e.body()["error"]})
            continue
        key = idx.key(doc_id, None if routing is None else str(routing))
        if key in idx.docs:
            doc = {"_index": idx.name, "_id": doc_id, "_version": 1,
                   "_seq_no": idx.versions[key],
                   "_primary_term": PRIMARY_TERM, "found": True}
            if idx.routing.get(key) is not None:
                doc["_routing"] = idx.routing[key]
            if params.get("_source") != "false":
                doc["_source"] = doc_source(idx, key)
            docs.append(doc)
        else:
            docs.append({"_index": idx.name, "_id": doc_id, "found": False})
    return 200, {"docs": docs}


def bulk(default_index, raw, params):
    if not raw.endswith(b"\n"):
        raise bad_request("The bulk request must be terminated by a newline "
                          "[\\n]")
    lines = raw.decode("utf-8").split("\n")[:-1]
    items = []
    errors = False
    i = 0
    t0 = time.monotonic()
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            action = json.loads(lines[i])
            (op, meta), = action.items()
        except (ValueError, AttributeError):
            raise bad_request("Malformed action/metadata line [%d], expected "
                              "START_OBJECT or END_OBJECT but found [%s]"
                              % (i + 1, lines[i][:20]))
        if op not in ("index", "create", "update", "delete"):
            raise bad_request("Malformed action/metadata line [%d], expected "
                              "field [create], [delete], [index] or [update] "
                              "but found [%s]" % (i + 1, op))
        i += 1
        src = src_text = None
        if op != "delete":
            if i >= len(lines):
                raise bad_request("The bulk request must be terminated by a "
                                  "newline [\\n]")
            src = json.loads(lines[i])
            src_text = lines[i]
            i += 1
        iname = meta.get("_index", default_index)
        if iname is None:
            raise bad_request("Validation Failed: 1: index is missing;",
                              "action_request_validation_exception")
        status = STATE.item_faults.get(str(meta.get("_id")))
        if status:
            item = item_error(iname, meta.get("_id"), EsError(
                status, "es_rejected_execution_exception" if status == 429
                else "mapper_parsing_exception", "injected item fault"))
        else:
            item = bulk_item(op, iname, meta.get("_id"), src, meta,
                             src_text)
        errors = errors or "error" in item
        items.append({op: item})
    return 200, {"took": int((time.monotonic() - t0) * 1000),
                 "errors": errors, "items": items}


def version_conflict(idx, key, meta):
    """The 409 of an action whose if_seq_no/if_primary_term the document
    (key: its shard and _id) does not have (docs-bulk.html,
    optimistic-concurrency-control.html), or None."""
    if "if_seq_no" not in meta and "if_primary_term" not in meta:
        return None
    doc_id = key[1]
    want = (meta.get("if_seq_no"), meta.get("if_primary_term"))
    if key in idx.docs and want == (idx.versions[key], PRIMARY_TERM):
        return None
    reason = "[%s]: version conflict, required seqNo [%s], primary term [%s]" \
        % (doc_id, want[0], want[1])
    if key in idx.docs:
        reason += ". current document has seqNo [%d] and primary term [%d]" \
            % (idx.versions[key], PRIMARY_TERM)
    else:
        reason += ". but no document was found"
    return EsError(409, "version_conflict_engine_exception", reason,
                   index=idx.name, shard=str(key[0]))


def action_routing(idx, doc_id, meta):
    """The routing of a bulk action (metadata "routing"), or None; raise
    routing_missing_exception when the index requires one."""
    routing = meta.get("routing")
    # an empty routing is none: IndexRequest, UpdateRequest and
    # DeleteRequest.routing("") set no routing (Elasticsearch's own request
    # classes; the reference does not say)
    if routing is not None and str(routing) != "":
        return str(routing)
    if idx.routing_required:
        raise EsError(400, "routing_missing_exception",
                      "routing is required for [%s]/[%s]" % (idx.name, doc_id),
                      index=idx.name)
    return None


def bulk_item(op, iname, doc_id, src, meta, src_text=None):
    """Apply one bulk action; the item of the response.  An index or create
    action keeps src_text, the source line as sent (RawSource); an update
    re-serialises the merged document."""
    try:
        iname = STATE.write_index(iname)
    except EsError as e:
        return item_error(iname, doc_id, e)
    idx = STATE.indices.get(iname)
    if idx is None:
        if op == "delete" or op == "update":
            return item_error(iname, doc_id, index_not_found(iname))
        if not STATE.auto_create:
            e = index_not_found(iname)
            e.reason += " and [action.auto_create_index] is [false]"
            return item_error(iname, doc_id, e)
        idx = STATE.indices[iname] = Index(iname)
    if idx.closed:
        return item_error(iname, doc_id, index_closed(idx))
    if write_blocked(idx):
        return item_error(iname, doc_id, write_blocked(idx))
    if doc_id is None:
        if op in ("update", "delete"):
            return item_error(iname, None, EsError(
                400, "action_request_validation_exception",
                "Validation Failed: 1: id is missing;"))
        doc_id = base64.urlsafe_b64encode(uuid.uuid4().bytes[:15]).decode()
    doc_id = str(doc_id)
    try:
        routing = action_routing(idx, doc_id, meta)
        key = idx.key(doc_id, routing)
        exists = key in idx.docs
        if op == "update" and not exists:
            raise EsError(404, "document_missing_exception",
                          "[%s]: document missing" % doc_id,
                          index=iname, shard=str(key[0]))
        conflict = version_conflict(idx, key, meta)
        if conflict is not None:
            raise conflict
        if op == "delete":
            if not exists:
                return {"_index": iname, "_id": doc_id, "_version": 1,
                        "result": "not_found", "_shards": shards(),
                        "_seq_no": next(idx.seq_no),
                        "_primary_term": PRIMARY_TERM, "status": 404}
            del idx.docs[key]
            idx.raw.pop(key, None)
            idx.routing.pop(key, None)
            return ok_item(idx, doc_id, "deleted", 200, next(idx.seq_no))
        if op == "create" and exists:
            raise EsError(409, "version_conflict_engine_exception",
                          "[%s]: version conflict, document already exists "
                          "(current version [1])" % doc_id,
                          index=iname, shard="0")
        if op == "update" and "script" in src:
            new = set_paths(copy.deepcopy(idx.docs[key]), src["script"])
        elif op == "update":
            new = merge(dict(idx.docs[key]), src.get("doc", {}))
        else:
            new = src
        if not isinstance(new, dict):
            raise EsError(400, "mapper_parsing_exception",
                          "failed to parse")
        idx.learn(new)
    except EsError as e:
        return item_error(iname, doc_id, e)
    idx.docs[key] = new
    if op == "update":
        idx.raw.pop(key, None)
    else:
        idx.raw[key] = src_text
    idx.versions[key] = next(idx.seq_no)
    if op != "update":
        # a document indexed on its shard keeps the routing it came with
        idx.routing.pop(key, None)
        if routing is not None:
            idx.routing[key] = routing
    if key not in idx.ord:
        idx.ord[key] = next(idx.seq)
    return ok_item(idx, doc_id, "updated" if exists else "created",
                   200 if exists else 201, idx.versions[key])


def set_paths(doc, script):
    """The one script pgpoly sends (elastic_bulk.c, script_update): set each
    of params.fields' paths to its value, making the objects along it."""
    if "for (def f : params.fields)" not in script.get("source", ""):
        raise EsError(400, "illegal_argument_exception",
                      "the stand-in runs pgpoly's field-setting script only")
    for f in script["params"]["fields"]:
        o = doc
        for part in f["path"][:-1]:
            if not isinstance(o.get(part), dict):
                o[part] = {}
            o = o[part]
        o[f["path"][-1]] = f["value"]
    return doc


def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            dst[k] = merge(dict(dst[k]), v)
        else:
            dst[k] = v
    return dst


def ok_item(idx, doc_id, result, status, seq_no):
    return {"_index": idx.name, "_id": doc_id, "_version": 1,
            "result": result,
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": seq_no, "_primary_term": PRIMARY_TERM,
            "status": status}


def item_error(iname, doc_id, e):
    err = {"type": e.etype, "reason": e.reason}
    err.update(e.extra)
    return {"_index": iname, "_id": doc_id, "status": e.status, "error": err}


# ---------------------------------------------------------------- HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "es-standin"
    # The headers and the body are two writes: without TCP_NODELAY the body
    # waits for the client's delayed ACK of the headers (40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def too_large(self):
        """A body over http.max_content_length (100mb): Elasticsearch's
        HTTP layer answers 413 with an empty body, before any handler."""
        left = int(self.headers.get("Content-Length"))
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        self.send(413, None, raw=b"")

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, obj, raw=None, truncate=False):
        data = raw if raw is not None else encode(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        if STATE.args.distribution != "opensearch":
            self.send_header("X-elastic-product", "Elasticsearch")
        self.end_headers()
        if self.command == "HEAD":
            return
        if truncate:
            self.wfile.write(data[:max(1, len(data) // 2)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def authorized(self):
        a = STATE.args
        if not a.auth and not a.api_key:
            return True
        h = self.headers.get("Authorization", "")
        if a.auth and h == "Basic " + base64.b64encode(
                a.auth.encode()).decode():
            return True
        if a.api_key and h == "ApiKey " + a.api_key:
            return True
        return False

    def take_fault(self, path):
        with LOCK:
            for f in STATE.faults:
                if f.get("path") and f["path"] not in path:
                    continue
                if f.get("exact") and f["exact"] != path:
                    continue
                if f.get("skip", 0) > 0:  # let that many through first
                    f["skip"] -= 1
                    return None
                f["count"] = f.get("count", 1) - 1
                if f["count"] <= 0:
                    STATE.faults.remove(f)
                return f
        return None

    def dispatch(self, method):
        url = urlsplit(self.path)
        path = unquote(url.path)
        params = {k: v[-1] for k, v in parse_qs(url.query,
                                                keep_blank_values=True).items()}
        if int(self.headers.get("Content-Length") or 0) > MAX_CONTENT_LENGTH:
            return self.too_large()
        raw = self.read_body()
        try:
            if path.startswith("/_standin/"):
                return self.control(method, path, raw)
            with LOCK:
                STATE.requests += 1
                STATE.log.append({"method": method, "path": self.path,
                                  "content_type":
                                  self.headers.get("Content-Type"),
                                  "body": raw[:300].decode("utf-8",
                                                           "replace")})
                del STATE.log[:-50]
            fault = self.take_fault(path)
            if fault and fault.get("delay_ms"):
                time.sleep(fault["delay_ms"] / 1000.0)
            if fault and fault.get("status"):
                e = EsError(fault["status"], "es_rejected_execution_exception"
                            if fault["status"] == 429 else
                            "standin_injected_exception",
                            "injected fault (status %d)" % fault["status"])
                return self.send(e.status, e.body())
            if fault and fault.get("garbage"):
                return self.send(200, None,
                                 raw=b"<html><body>502 Bad Gateway</body>"
                                     b"</html> not json at all")
            if not self.authorized():
                e = EsError(401, "security_exception",
                            "missing authentication credentials for REST "
                            "request [%s]" % path)
                return self.send(401, e.body())
            with LOCK:
                STATE.item_faults = (fault or {}).get("item_faults") or {}
                try:
                    status, obj = self.route(method, path, params, raw)
                finally:
                    STATE.item_faults = {}
            key = method + " " + re.sub(r"^/[^_/][^/]*", "/{index}", path)
            with LOCK:
                STATE.counts[key] = STATE.counts.get(key, 0) + 1
            if "filter_path" in params and status < 300:
                obj = filter_response(obj, params["filter_path"])
            self.send(status, obj, truncate=bool(fault and
                                                 fault.get("truncate")))
        except EsError as e:
            self.send(e.status, e.body())
        except (ValueError, KeyError, TypeError) as e:
            err = bad_request("failed to parse request: %s" % e,
                              "x_content_parse_exception")
            self.send(400, err.body())

    def control(self, method, path, raw):
        with LOCK:
            if path == "/_standin/faults" and method == "POST":
                STATE.faults.extend(json.loads(raw or b"{}").get("faults",
                                                                  []))
                return self.send(200, {"acknowledged": True})
            if path == "/_standin/faults" and method == "DELETE":
                STATE.faults.clear()
                return self.send(200, {"acknowledged": True})
            if path == "/_standin/stats":
                return self.send(200, {
                    "requests": STATE.requests, "counts": STATE.counts,
                    "open_pits": len(STATE.pits),
                    "open_scrolls": len(STATE.scrolls),
                    "faults_left": len(STATE.faults),
                    "last_requests": STATE.log[-20:]})
        self.send(404, {"error": "unknown control endpoint"})

    def route(self, method, path, params, raw):
        body = None
        ctype = (self.headers.get("Content-Type") or "").split(";")[0]
        parts = [p for p in path.split("/") if p]
        if raw and not parts[-1:] == ["_bulk"]:
            if ctype not in ("application/json", "application/x-ndjson",
                             "application/vnd.elasticsearch+json"):
                raise EsError(406, "media_type_header_exception",
                              "Content-Type header [%s] is not supported"
                              % ctype)
            body = json.loads(raw)
        if not parts:
            if method in ("GET", "HEAD"):
                return 200, info()
        elif parts[-1] == "_bulk" and method in ("POST", "PUT"):
            if ctype not in ("application/json", "application/x-ndjson"):
                raise EsError(406, "media_type_header_exception",
                              "Content-Type header [%s] is not supported"
                              % ctype)
            return bulk(parts[0] if len(parts) == 2 else None, raw, params)
        elif parts == ["_search", "scroll"]:
            if method in ("GET", "POST"):
                return scroll_next(body, params)
            if method == "DELETE":
                return clear_scroll(body)
        elif parts == ["_search", "point_in_time"] and method == "DELETE":
            if not os_has_pit():
                raise no_handler(method, path)
            return os_delete_pits(body)
        elif len(parts) == 3 and parts[1:] == ["_search", "point_in_time"] \
                and method == "POST":
            if not os_has_pit():
                raise no_handler(method, path)
            return os_create_pit(parts[0], params)
        elif parts == ["_pit"] and method == "DELETE":
            if STATE.args.distribution == "opensearch":
                raise bad_request("no handler found for uri [/_pit]")
            return close_pit(body)
        elif parts[-1] == "_search" and method in ("GET", "POST") and \
                len(parts) <= 2:
            return search(parts[0] if len(parts) == 2 else None, body,
                          params)
        elif len(parts) == 2 and parts[1] == "_mget" and \
                method in ("GET", "POST"):
            return mget(parts[0], body, params)
        elif parts[-1] == "_count" and method in ("GET", "POST") and \
                len(parts) <= 2:
            return count(parts[0] if len(parts) == 2 else None, body)
        elif len(parts) == 2 and parts[1] == "_pit" and method == "POST":
            return open_pit(parts[0], params)
        elif parts[-1] == "_refresh" and method in ("GET", "POST"):
            if len(parts) == 2:
                STATE.resolve(parts[0])
            return 200, {"_shards": {"total": 1, "successful": 1,
                                     "failed": 0}}
        elif len(parts) == 2 and parts[1] == "_mapping" and method == "GET":
            return get_mapping(parts[0])
        elif parts == ["_mapping"] and method == "GET":
            return get_mapping("_all")
        elif len(parts) == 2 and parts[1] in ("_close", "_open") and \
                method == "POST":
            return close_index(parts[0], parts[1] == "_close")
        elif len(parts) == 2 and parts[1] == "_settings" and method == "PUT":
            return update_settings(parts[0], body)
        elif parts == ["_cluster", "settings"] and method == "PUT":
            return cluster_settings(body)
        elif parts == ["_aliases"] and method == "POST":
            return update_aliases(body)
        elif len(parts) == 3 and parts[1] in ("_alias", "_aliases") and \
                method in ("PUT", "POST"):
            STATE.add_alias(parts[0], parts[2],
                            (body or {}).get("is_write_index"))
            return 200, {"acknowledged": True}
        elif len(parts) == 1 and not parts[0].startswith("_"):
            if method == "PUT":
                return create_index(parts[0], body)
            if method == "DELETE":
                return delete_index(parts[0])
            if method in ("GET", "HEAD"):
                return get_index(parts[0], params)
        raise EsError(405 if parts else 400, "illegal_argument_exception",
                      "Incorrect HTTP method for uri [%s] and method [%s]"
                      % (path, method))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    global STATE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--distribution", default="elasticsearch",
                    choices=("elasticsearch", "opensearch"))
    ap.add_argument("--version", default=None)
    ap.add_argument("--auth", default=None, help="user:password required")
    ap.add_argument("--api-key", default=None, help="ApiKey required")
    args = ap.parse_args()
    if args.version is None:
        args.version = "2.11.0" if args.distribution == "opensearch" \
            else "8.11.0"
    STATE = State(args)
    srv = Server((args.host, args.port), Handler)
    print("es_standin listening on %s:%d (%s %s)" % (
        args.host, args.port, args.distribution, args.version), flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
