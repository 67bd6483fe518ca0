/*-------------------------------------------------------------------------
 *
 * pgpoly_jansson.h
 *		  Include jansson alongside PostgreSQL's builtins.
 *
 * jansson's json_object() and PostgreSQL's SQL-callable json_object()
 * (utils/fmgrprotos.h) share a name.  A file that uses jansson includes this
 * header right after postgres.h and before any other header that pulls in
 * utils/builtins.h: it renames PostgreSQL's declaration (never called from
 * C) so both can be used in one file.  PostgreSQL's prototypes come first
 * because jansson defines json_typeof() as a macro.
 *
 * src/pgpoly_jansson.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGPOLY_JANSSON_H
#define PGPOLY_JANSSON_H

#ifdef FMGRPROTOS_H
#error "include pgpoly_jansson.h before utils/builtins.h or utils/fmgrprotos.h"
#endif

/* PostgreSQL's declarations first: jansson's json_typeof() is a macro. */
#define json_object pgpoly_sql_json_object_unused
#include "utils/fmgrprotos.h"
#undef json_object

#include <jansson.h>

/*
 * Never call jansson's json_object(): the server binary exports its SQL
 * function json_object(), and the dynamic linker binds our call to that one
 * (the executable's symbols come first).  Build empty objects with this.
 */
#define PgpolyJsonNewObject()	json_pack("{}")

#endif							/* PGPOLY_JANSSON_H */
