# pgpoly — PGXS build, plus the two project commands (`make test`, `make demo`).

EXTENSION   = pgpoly
EXTVERSION  = 0.1
MODULE_big  = pgpoly

CORE_SRCS   = $(wildcard src/*.c)
FDW_SRCS    = $(wildcard fdw/*.c)
OBJS        = $(CORE_SRCS:.c=.o) $(FDW_SRCS:.c=.o)

# The install script is assembled from the per-area fragments in extension/,
# in file-name order, so each area (FDWs, registry, feature store) owns a file.
DATA_built  = $(EXTENSION)--$(EXTVERSION).sql
EXT_FRAGMENTS = $(sort $(wildcard extension/*.sql))

PG_CPPFLAGS = -I$(srcdir)/src -Wall -Wextra -Wno-unused-parameter \
              -Wno-missing-field-initializers -Wno-sign-compare
ifdef PGPOLY_WERROR
PG_CPPFLAGS += -Werror
endif
SHLIB_LINK  = -lhiredis -lcurl -ljansson

REGRESS     = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=pgpoly

EXTRA_CLEAN = $(DATA_built) results regression.diffs regression.out

PG_CONFIG  ?= pg_config
PGXS       := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(DATA_built): $(EXT_FRAGMENTS)
	cat $^ > $@

# Every object depends on every header: they are few, and a stale struct
# layout is worse than a slower rebuild.
$(OBJS): $(wildcard src/*.h fdw/*.h)

.PHONY: test demo bench valgrind fuzz jdbc-check
test:
	bash test/run-tests.sh

# The test suite with every backend under valgrind memcheck (slow; not part
# of `make test`).  See test/valgrind.sh.
valgrind:
	bash test/valgrind.sh

# Each libFuzzer harness of test/fuzz/ for FUZZ_SECONDS (not part of
# `make test`).  See test/fuzz/run.sh.
fuzz:
	bash test/fuzz/run.sh

demo:
	bash test/demo.sh

# pgjdbc against the stores beside native copies (needs a JDK, installed from
# Debian if missing; not part of `make test`).  See test/jdbc/run.sh.
jdbc-check:
	bash test/jdbc/run.sh

# make bench BENCH="redis:join,keys features": a subset (test/bench/run.sh)
bench:
	bash test/bench/run.sh $(BENCH)
