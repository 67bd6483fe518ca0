/*-------------------------------------------------------------------------
 *
 * option.c
 *		  Validation and lookup of FDW options, shared by every store.
 *
 * Each store declares its valid options once, as a PgpolyOption table, and
 * its validator function calls PgpolyValidateOptions().  Errors follow
 * postgres_fdw: an unknown option names the valid ones for that context and
 * the closest match; typed options are checked here so that a bad value is
 * rejected at CREATE/ALTER time rather than at query time.
 *
 * Secrets (options marked secret) are accepted only on user mappings and
 * their values are never quoted in a message.  URL options accept only
 * http(s) URLs without credentials (PgpolyCheckUrls); a file option makes
 * libcurl read a server-side file, so only a role that may read server
 * files can set it (as file_fdw's filename).
 *
 * A socket option names a Unix-domain socket on the database server: an
 * absolute path that fits in sockaddr_un, checked here; whether a server
 * listens there is found out when connecting, as for a host and port.
 * Setting one needs no more than setting a host: the trust rule
 * (connection.c) applies to every connection, whatever its transport.
 *
 * IMPORT FOREIGN SCHEMA takes no options in any store
 * (PgpolyRejectImportOptions): an option there is an error, never ignored.
 *
 * The user mapping option password_required 'false' waives the trust rule
 * (connection.c) for that mapping, so only a superuser may set it, as in
 * postgres_fdw.
 *
 * src/option.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <sys/un.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_user_mapping.h"
#include "catalog/pg_attribute.h"
#include "commands/defrem.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

#include "pgpoly.h"

/* Human name of a catalog context, for messages. */
static const char *
context_name(Oid context)
{
	switch (context)
	{
		case ForeignServerRelationId:
			return "server";
		case UserMappingRelationId:
			return "user mapping";
		case ForeignTableRelationId:
			return "foreign table";
		case AttributeRelationId:
			return "column";
		default:
			return "object";
	}
}

/* Find the option called name in context, or NULL. */
static const PgpolyOption *
find_option(const PgpolyOption *valid, const char *name, Oid context)
{
	for (; valid->name; valid++)
		if (valid->context == context && strcmp(valid->name, name) == 0)
			return valid;
	return NULL;
}

/*
 * The candidate closest in spelling to a name (Levenshtein distance, as
 * PG16's postgres_fdw does): call closest_consider() for each candidate,
 * then closest_result().
 */
typedef struct Closest
{
	const char *name;
	int			best;
	const char *match;			/* not NUL-terminated: matchlen bytes */
	size_t		matchlen;
} Closest;

/* Start looking for the candidate closest to name. */
static void
closest_init(Closest *c, const char *name)
{
	c->name = name;
	c->best = INT_MAX;
	c->match = NULL;
	c->matchlen = 0;
}

/*
 * varstr_levenshtein() raises an ERROR for a string longer than this
 * (levenshtein.c's MAX_LEVENSHTEIN_STRLEN, not exported); such a name or
 * value is no typo of a short candidate, so it gets no hint (as PG16's
 * ClosestMatch skips it).
 */
#define CLOSEST_MAX_LEN 255

/* Consider candidate (len bytes). */
static void
closest_consider(Closest *c, const char *candidate, size_t len)
{
	size_t		namelen = strlen(c->name);
	int			d;

	if (namelen > CLOSEST_MAX_LEN || len > CLOSEST_MAX_LEN)
		return;
	d = varstr_levenshtein(c->name, namelen, candidate, len, 1, 1, 1, false);
	if (d < c->best)
	{
		c->best = d;
		c->match = candidate;
		c->matchlen = len;
	}
}

/* The closest candidate (palloc'd) if it is plausibly a typo, else NULL. */
static char *
closest_result(Closest *c)
{
	if (c->match == NULL || c->best > (int) Max(2, strlen(c->name) / 3))
		return NULL;
	return pnstrdup(c->match, c->matchlen);
}

/*
 * Report an option that is not valid in this context: list the valid ones
 * and suggest the closest spelling.
 */
static void
report_unknown_option(const PgpolyOption *valid, const char *name,
					  Oid context)
{
	StringInfoData list;
	Closest		c;
	char	   *closest;
	const PgpolyOption *o;

	initStringInfo(&list);
	for (o = valid; o->name; o++)
		if (o->context == context)
			appendStringInfo(&list, "%s%s", list.len ? ", " : "", o->name);

	/* A secret given on the wrong object gets a precise message. */
	for (o = valid; o->name; o++)
		if (o->secret && strcmp(o->name, name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" is only allowed on a user mapping",
							name),
					 errdetail("Secrets are kept in USER MAPPING options so that they never appear in catalogs readable by other users."),
					 errhint("Valid options in this context are: %s.", list.data)));

	closest_init(&c, name);
	for (o = valid; o->name; o++)
		if (o->context == context)
			closest_consider(&c, o->name, strlen(o->name));
	closest = closest_result(&c);

	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
			 errmsg("invalid option \"%s\" for a %s", name,
					context_name(context)),
			 closest ? errhint("Perhaps you meant the option \"%s\". Valid options in this context are: %s.",
							   closest, list.data) :
			 list.len ? errhint("Valid options in this context are: %s.",
								list.data) :
			 errhint("There are no valid options in this context.")));
}

/* Check that value is one of the comma-separated words in values. */
static bool
enum_value_ok(const char *values, const char *value)
{
	size_t		len = strlen(value);
	const char *p = values;

	while (*p)
	{
		const char *end = strchr(p, ',');
		size_t		wlen = end ? (size_t) (end - p) : strlen(p);

		if (wlen == len && strncmp(p, value, len) == 0)
			return true;
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

/* "a,b,c" as "a, b, c", for messages. */
static char *
enum_values_text(const char *values)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *values; values++)
		appendStringInfoString(&buf, *values == ',' ? ", " : (char[2]) {*values, 0});
	return buf.data;
}

/*
 * Report a value that is not one of an enum option's values: list them and
 * suggest the closest spelling.
 */
static void
report_bad_enum_value(const PgpolyOption *opt, const char *value)
{
	Closest		c;
	char	   *closest;
	const char *p = opt->values;

	closest_init(&c, value);
	for (;;)
	{
		size_t		len = strcspn(p, ",");

		closest_consider(&c, p, len);
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	closest = closest_result(&c);
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
			 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
			 closest ? errhint("Perhaps you meant \"%s\". Valid values are: %s.",
							   closest, enum_values_text(opt->values)) :
			 errhint("Valid values are: %s.", enum_values_text(opt->values))));
}

/* Parse a whole-string integer; false on junk or overflow. */
static bool
parse_int64(const char *value, int64 *result)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0')
		return false;
	*result = (int64) v;
	return true;
}

/*
 * ERROR unless the current user may name a server-side file for libcurl to
 * read: superusers and members of pg_read_server_files, as file_fdw.
 */
static void
check_file_option(const PgpolyOption *opt, const char *value)
{
	if (value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"%s\" must not be empty", opt->name)));
	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to set option \"%s\"", opt->name),
				 errdetail("Only superusers and roles with privileges of the pg_read_server_files role may name a file on the database server.")));
}

/*
 * ERROR unless value can be the path of a Unix-domain socket: absolute (a
 * relative one would depend on the backend's working directory) and short
 * enough for sun_path with its terminating NUL.
 */
static void
check_socket_option(const PgpolyOption *opt, const char *value)
{
	size_t		room = sizeof(((struct sockaddr_un *) NULL)->sun_path);

	if (value[0] != '/')
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", opt->name, value),
				 errdetail("The path of a Unix-domain socket must be absolute."),
				 errhint("Use the path Redis' unixsocket setting names, such as '/run/redis/redis.sock'.")));
	if (strlen(value) >= room)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": path too long", opt->name),
				 errdetail("A Unix-domain socket path has at most %zu bytes; this one has %zu.",
						   room - 1, strlen(value))));
}

/*
 * ERROR unless value can be sent as an HTTP header's value: libcurl sends
 * a header as given, so a CR or LF in it would end the header and start
 * others (or a second request) of the user's choosing.  The value is a
 * secret: it is never quoted.
 */
static void
check_header_option(const PgpolyOption *opt, const char *value)
{
	for (const unsigned char *c = (const unsigned char *) value; *c; c++)
		if (*c < 0x20 || *c == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("option \"%s\" must not contain control characters", opt->name),
					 errdetail("It is sent in an HTTP header, where a line break would start another header.")));
}

/* Check one option's value against its declared type. */
static void
check_option_value(const PgpolyOption *opt, const char *value)
{
	int64		ival;
	bool		bval;

	switch (opt->type)
	{
		case PGPOLY_OPT_STRING:
		case PGPOLY_OPT_HEADER:
			if (opt->type == PGPOLY_OPT_HEADER)
				check_header_option(opt, value);
			/* min is the minimum length; secrets are never quoted. */
			if ((int64) strlen(value) < opt->min)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("option \"%s\" must not be empty", opt->name)));
			break;
		case PGPOLY_OPT_INT:
			if (!parse_int64(value, &ival) || ival < opt->min || ival > opt->max)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"%s\": \"%s\"",
								opt->name, value),
						 errhint("Use an integer between " INT64_FORMAT " and " INT64_FORMAT ".",
								 opt->min, opt->max)));
			break;
		case PGPOLY_OPT_BOOL:
			if (!parse_bool(value, &bval))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"%s\": \"%s\"",
								opt->name, value),
						 errhint("Use true or false.")));
			break;
		case PGPOLY_OPT_ENUM:
			if (!enum_value_ok(opt->values, value))
				report_bad_enum_value(opt, value);
			break;
		case PGPOLY_OPT_URL:
			PgpolyCheckUrls(opt->name, value, NULL);
			break;
		case PGPOLY_OPT_FILE:
			check_file_option(opt, value);
			break;
		case PGPOLY_OPT_SOCKET:
			check_socket_option(opt, value);
			break;
	}
}

/*
 * password_required 'false' is for superusers to set (postgres_fdw's rule).
 * The validator sees the mapping's whole new option list, not what changed,
 * so a non-superuser can neither set it nor alter a mapping that has it;
 * setting it to true is allowed to anyone.
 */
static void
check_password_required(const char *value)
{
	bool		required;

	if (parse_bool(value, &required) && !required && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may set option \"password_required\" to false"),
				 errdetail("It lets non-superusers use the user mapping without a credential."),
				 errhint("A user mapping with password_required 'false' can only be created or altered by a superuser.")));
}

/*
 * Validate a CREATE/ALTER option list for the given catalog context against
 * the store's table of valid options.  ereports on the first problem.
 */
void
PgpolyValidateOptions(const PgpolyOption *valid, List *options, Oid context)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);
		const PgpolyOption *opt = find_option(valid, def->defname, context);

		if (opt == NULL)
			report_unknown_option(valid, def->defname, context);
		check_option_value(opt, defGetString(def));
		if (context == UserMappingRelationId &&
			strcmp(opt->name, "password_required") == 0)
			check_password_required(defGetString(def));
	}
}

/* Value of option name in a DefElem list, or dflt when absent. */
const char *
PgpolyGetOption(List *options, const char *name, const char *dflt)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, name) == 0)
			return defGetString(def);
	}
	return dflt;
}

/* Integer option; values were range-checked by the validator. */
int64
PgpolyGetIntOption(List *options, const char *name, int64 dflt)
{
	const char *s = PgpolyGetOption(options, name, NULL);
	int64		v;

	if (s == NULL)
		return dflt;
	if (!parse_int64(s, &v))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, s)));
	return v;
}

/* Boolean option; values were checked by the validator. */
bool
PgpolyGetBoolOption(List *options, const char *name, bool dflt)
{
	const char *s = PgpolyGetOption(options, name, NULL);
	bool		v;

	if (s == NULL)
		return dflt;
	if (!parse_bool(s, &v))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, s)));
	return v;
}

/*
 * The values of the options in a user mapping's list that valid marks
 * secret (passwords, API keys), for PgpolyHttpConfig.secrets.
 */
List *
PgpolySecretValues(const PgpolyOption *valid, List *options)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);
		const PgpolyOption *opt = find_option(valid, def->defname,
											  UserMappingRelationId);

		if (opt && opt->secret && defGetString(def)[0] != '\0')
			result = lappend(result, defGetString(def));
	}
	return result;
}

/* parse_bool, exported so stores need not include builtins.h for it. */
bool
PgpolyParseBool(const char *value, bool *result)
{
	return parse_bool(value, result);
}

/*
 * ERROR if IMPORT FOREIGN SCHEMA was given options: no pgpoly wrapper takes
 * any, and an ignored one (a typo, or a table option such as fetch_size
 * meant for the imported tables) would go unnoticed.  Call it before any
 * request to the store.
 */
void
PgpolyRejectImportOptions(List *options)
{
	if (options != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\" for IMPORT FOREIGN SCHEMA",
						linitial_node(DefElem, options)->defname),
				 errhint("pgpoly's wrappers take no IMPORT FOREIGN SCHEMA options; set table options on the imported tables with ALTER FOREIGN TABLE.")));
}
