# provider_connections: PGXS build, regression and isolation suites.
EXTENSION = provider_connections
MODULE_big = provider_connections
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA = $(sort $(wildcard provider_connections--*.sql))
PGFILEDESC = "provider_connections - provider connections with audit events and encrypted credentials"

# Every file in sql/ is a test; each starts from a fresh install of its own
# (the upgrade test in a database of its own), so they run in any order.
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --load-extension=pgcrypto
ISOLATION = $(basename $(notdir $(sort $(wildcard specs/*.spec))))
ISOLATION_OPTS = --load-extension=pgcrypto
# TAP tests in t/ (PostgreSQL::Test::Cluster; needs IPC::Run): installcheck
# runs them with prove after the suites above. Each makes its own clusters,
# so run it as a user initdb accepts, not root; scripts/test.sh runs them as
# postgres from a copy of the tree (TAP_TESTS= there for the suites above).
TAP_TESTS = 1

# libpq: replication.c parses a subscription's connection string, to name
# its publisher without the password.
PG_CPPFLAGS = -I$(libpq_srcdir)
SHLIB_LINK_INTERNAL = $(libpq)

PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXN distribution. The version is default_version in the control file and
# nowhere else: META.json is generated from META.json.in with it, as a
# semantic version ('1.4' gives 1.4.0), and "make dist" packs the committed
# tree (git archive HEAD) with that META.json into
# $(DISTDIR)/provider_connections-<version>.zip. scripts/meta_check.py checks
# both.
EXTVERSION := $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" $(EXTENSION).control)
DISTVERSION := $(shell echo '$(EXTVERSION)' | awk -F. '{ v = $$0; for (i = NF; i < 3; i++) v = v ".0"; print v }')
DISTDIR ?= .
DISTNAME = $(EXTENSION)-$(DISTVERSION)

META.json: META.json.in $(EXTENSION).control
	sed 's/@DISTVERSION@/$(DISTVERSION)/g' $< >$@

# Not a file target: HEAD moves without touching any file make sees.
.PHONY: dist
dist: META.json
	git archive --format zip --prefix '$(DISTNAME)/' --add-file META.json -o '$(DISTDIR)/$(DISTNAME).zip' HEAD
	@echo '$(DISTDIR)/$(DISTNAME).zip'
