# provider_connections: PGXS build, regression and isolation suites.
EXTENSION = provider_connections
MODULE_big = provider_connections
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA = $(sort $(wildcard provider_connections--*.sql))
PGFILEDESC = "provider_connections - provider connections with audit events and encrypted credentials"

# install first: it creates the extension the other files use; upgrade last:
# it drops the extension to install 1.0 and update it.
REGRESS = install connect disconnect refresh state_machine audit_log encryption uuid7 \
	privileges hostile_input feed rotation upgrade
REGRESS_OPTS = --load-extension=pgcrypto
ISOLATION = $(basename $(notdir $(sort $(wildcard specs/*.spec))))
ISOLATION_OPTS = --load-extension=pgcrypto

PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
