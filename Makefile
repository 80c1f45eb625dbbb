# fanout -- build, test, run.
#
#   make                  build/fanoutd, build/fanout, build/libfanout.{a,so}
#   make test             unit + integration + conformance tests, the README's commands,
#                         docs against --help, make install (installs build deps first)
#   make conformance      docs/PROTOCOL.md against fanoutd (tests/conformance/)
#   make test-tls         the integration tests again, every client over TLS
#   make run              build fanoutd and fanout, run the broker on its defaults
#   make SANITIZE=address,undefined test   |   make SANITIZE=thread test
#   make bench            micro-benchmarks (codec) and `fanout bench` scenarios
#   make install PREFIX=/usr/local
#   make swarm-test       docker/stack.yml on a two-node Swarm (docker/swarm-test.sh) [DESTDIR=...]   binaries, library, headers
#                         (include/fanout/), fanout.pc, man pages, example
#                         config, systemd unit
#
# Out-of-tree: everything goes to $(BUILD) (default build/), including the C
# code protoc-c generates from proto/fanout.proto. Changing CC, CFLAGS or
# SANITIZE rebuilds everything (see the flags stamp below).

BUILD    ?= build
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
LIBDIR   ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR   ?= $(PREFIX)/share/man
DOCDIR   ?= $(PREFIX)/share/doc/fanout
# /etc for a system install (PREFIX=/usr), else PREFIX/etc
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
CC       ?= cc
PROTOC_C ?= protoc-c
SANITIZE ?=
OPT      ?= -O2

CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -fPIC \
            -Iinclude -Iproto -I$(BUILD)/gen -MMD -MP
LDFLAGS  += -pthread
LDLIBS   += -lprotobuf-c -lm
# libsodium: the broker's password hashing (argon2id) and keyed hashes, and
# the multicast datagram tags of both the broker and libfanout.
SODIUM_LIBS ?= -lsodium
# OpenSSL 3 (libssl-dev): fanoutd's TLS listener, libfanout's tls://
# (and so the CLI), and the tests.
TLS_LIBS ?= -lssl -lcrypto

ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CFLAGS  += -DFO_VERSION='"$(VERSION)"'

# ---------------------------------------------------------------- sources
GEN_C      := $(BUILD)/gen/fanout.pb-c.c
GEN_H      := $(BUILD)/gen/fanout.pb-c.h
# The peer protocol between brokers (docs/CLUSTER.md): the broker's alone.
GEN_CL_C   := $(BUILD)/gen/cluster.pb-c.c
GEN_CL_H   := $(BUILD)/gen/cluster.pb-c.h
PROTO_SRC  := $(wildcard proto/*.c)
BROKER_SRC := $(wildcard broker/*.c)
LIB_SRC    := $(wildcard client/*.c)
CLI_SRC    := $(wildcard client/cli/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
INTEG_SRC  := $(wildcard tests/integration/test_*.c)
TSUP_SRC   := $(wildcard tests/support/*.c)
BENCH_SRC  := $(wildcard tests/bench/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
PROTO_OBJ  := $(call obj,$(PROTO_SRC)) $(BUILD)/obj/gen/fanout.pb-c.o
BROKER_OBJ := $(call obj,$(BROKER_SRC)) $(BUILD)/obj/gen/cluster.pb-c.o
BROKER_LIB_OBJ := $(filter-out $(BUILD)/obj/broker/main.o,$(BROKER_OBJ))
LIB_OBJ    := $(call obj,$(LIB_SRC)) $(PROTO_OBJ)
CLI_OBJ    := $(call obj,$(CLI_SRC))
CLI_LIB_OBJ := $(filter-out $(BUILD)/obj/client/cli/main.o,$(CLI_OBJ))
TSUP_OBJ   := $(call obj,$(TSUP_SRC))
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
INTEG_BIN  := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(INTEG_SRC))
BENCH_BIN  := $(patsubst tests/bench/%.c,$(BUILD)/tests/bench/%,$(BENCH_SRC))

ALL_BIN := $(BUILD)/fanoutd $(BUILD)/fanout $(BUILD)/libfanout.a \
           $(BUILD)/libfanout.so $(BUILD)/fanout.pc

.PHONY: all deps test test-tls unit integration conformance run bench bench-compare fuzz clean install docker-test swarm-test valgrind
all: $(ALL_BIN)

# ---------------------------------------------------------------- deps
# One script installs what a fresh Debian 12 lacks (as root), or prints the
# apt command and stops. The stamp keeps it from running on every make.
DEPS_STAMP := $(BUILD)/.deps-ok
deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	@sh scripts/deps.sh
	@mkdir -p $(@D) && touch $@

# ---------------------------------------------------------------- flags stamp
# Rebuild everything when the compiler or flags change.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW   := $(CC) $(CFLAGS) $(LDFLAGS) $(LDLIBS) $(SODIUM_LIBS) $(TLS_LIBS)
$(shell mkdir -p $(BUILD); if [ "$$(cat $(FLAGS_STAMP) 2>/dev/null)" != '$(FLAGS_NOW)' ]; then printf '%s' '$(FLAGS_NOW)' > $(FLAGS_STAMP); fi)

# ---------------------------------------------------------------- rules
$(GEN_C) $(GEN_H) &: proto/fanout.proto | $(DEPS_STAMP)
	@mkdir -p $(BUILD)/gen
	$(PROTOC_C) --c_out=$(BUILD)/gen -Iproto proto/fanout.proto

$(GEN_CL_C) $(GEN_CL_H) &: proto/cluster.proto | $(DEPS_STAMP)
	@mkdir -p $(BUILD)/gen
	$(PROTOC_C) --c_out=$(BUILD)/gen -Iproto proto/cluster.proto

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Wno-unused-parameter -c -o $@ $<

# Tests (and their support code) see every module's internal headers.
$(BUILD)/obj/tests/%.o: CFLAGS += -Ibroker -Iclient -Iclient/cli -Itests/support

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP) | $(GEN_H) $(GEN_CL_H)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libfanout.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libfanout.so: $(LIB_OBJ) scripts/libfanout.map
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libfanout.so.0 -Wl,--version-script=scripts/libfanout.map \
		-o $@ $(LIB_OBJ) $(LDLIBS) $(SODIUM_LIBS) $(TLS_LIBS)

# fanout.pc: libdir and includedir relative to ${prefix} when they are
# under it, so pkg-config --define-variable=prefix=... relocates it.
PC_SED = -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	-e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
	-e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|'
$(BUILD)/fanout.pc: scripts/fanout.pc.in VERSION Makefile
	sed $(PC_SED) $< > $@

# The public headers as an application includes them, <fanout/fanout.h>
# (what `make install` puts under INCLUDEDIR); in the tree they stay
# include/fanout.h, included as "fanout.h".
PUB_H := include/fanout.h include/fo_err.h
STAGED_H := $(patsubst include/%,$(BUILD)/include/fanout/%,$(PUB_H))
$(BUILD)/include/fanout/%.h: include/%.h
	@mkdir -p $(@D)
	cp $< $@

$(BUILD)/fanoutd: $(BROKER_OBJ) $(PROTO_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SODIUM_LIBS) $(TLS_LIBS)

$(BUILD)/fanout: $(CLI_OBJ) $(BUILD)/libfanout.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SODIUM_LIBS) $(TLS_LIBS)

# Tests link against everything except the mains; an archive pulls in only
# the objects a test needs.
$(BUILD)/libtestall.a: $(BROKER_LIB_OBJ) $(CLI_LIB_OBJ) $(LIB_OBJ) $(TSUP_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/libtestall.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libtestall.a $(LDLIBS) $(SODIUM_LIBS) $(TLS_LIBS) -lcmocka

# ---------------------------------------------------------------- examples
# examples/*.c: a producer and a consumer built the way an application
# would build them -- the public headers and libfanout.a only, no
# _GNU_SOURCE, #include <fanout/fanout.h>. Not part of `all`; `make examples`.
EXAMPLE_BIN := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
EXAMPLE_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Werror -I$(BUILD)/include
ifneq ($(SANITIZE),)
EXAMPLE_CFLAGS += -fsanitize=$(SANITIZE)
endif
.PHONY: examples
examples: $(EXAMPLE_BIN)
$(BUILD)/examples/%: examples/%.c $(STAGED_H) $(BUILD)/libfanout.a
	@mkdir -p $(@D)
	$(CC) $(EXAMPLE_CFLAGS) -o $@ $< $(BUILD)/libfanout.a $(LDFLAGS) -lprotobuf-c $(SODIUM_LIBS) $(TLS_LIBS)

# ---------------------------------------------------------------- targets
# The benchmarks are built (not run) with the tests, so they never rot.
# tests/docs/run: the man pages, the example config and the docs agree
# with --help; tests/install/run: make install into a temporary DESTDIR,
# then an example built against it; tests/readme/run: the README's
# commands, in a fresh copy of the tree, in the order shown.
SCRIPT_TESTS := tests/conformance/run tests/docs/run tests/install/run tests/readme/run
test: deps all $(UNIT_BIN) $(INTEG_BIN) $(BENCH_BIN)
	@sh tests/run.sh $(BUILD) $(UNIT_BIN) $(INTEG_BIN) $(SCRIPT_TESTS)

unit: deps $(UNIT_BIN)
	@sh tests/run.sh $(BUILD) $(UNIT_BIN)

integration: deps all $(INTEG_BIN)
	@sh tests/run.sh $(BUILD) $(INTEG_BIN)

# docs/PROTOCOL.md checked against a real fanoutd by a second client written
# from the document alone (Python, tests/conformance/); one line per test.
conformance: deps $(BUILD)/fanoutd
	@FO_BUILD=$(BUILD) tests/conformance/run

# The integration suites with every broker also listening on TLS and every
# client talking TLS to it: the harness's raw protocol clients
# (fo_tc_open...), and libfanout and the CLI through fo_tb_t.addr
# (FO_TEST_TLS=1, tests/support/harness.h).
test-tls: deps all $(INTEG_BIN)
	@FO_TEST_TLS=1 sh tests/run.sh $(BUILD) $(INTEG_BIN)

# The integration suites with every broker under valgrind (slow: minutes);
# FO_TEST_TLS=1 make valgrind: the same with the raw clients over TLS.
valgrind: deps all $(INTEG_BIN)
	@sh scripts/deps.sh valgrind
	@FO_TEST_TIMEOUT=1800 FO_BROKER_WRAP="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite" \
		sh tests/run.sh $(BUILD) $(INTEG_BIN)

# Builds the CLI too: the README's Quick start uses build/fanout next.
run: deps $(BUILD)/fanoutd $(BUILD)/fanout
	./$(BUILD)/fanoutd $(ARGS)

bench: deps all $(BENCH_BIN)
	@sh tests/bench/run.sh $(BUILD)

# libFuzzer on the frame codec (clang), FUZZ_SECONDS each (default 60).
FUZZ_SECONDS ?= 60
fuzz: deps $(GEN_H)
	@mkdir -p $(BUILD)/fuzz/corpus
	clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iinclude -Iproto -I$(BUILD)/gen \
		-o $(BUILD)/fuzz/fuzz_frame tests/fuzz/fuzz_frame.c proto/frame.c proto/arena.c proto/buf.c \
		proto/err.c $(GEN_C) -lprotobuf-c
	$(BUILD)/fuzz/fuzz_frame -max_total_time=$(FUZZ_SECONDS) -max_len=4096 $(BUILD)/fuzz/corpus 2>&1 | tail -5

# The peer benchmark script (nats-server, redis, mosquitto; not part of
# this repository: PEERS=PATH) and fanout bench in one run, as
# docs/BENCHMARKS.md records them.
bench-compare: peers-given deps all
	@sh tests/bench/compare.sh $(PEERS)

.PHONY: peers-given
peers-given:
	@if [ -z "$(PEERS)" ]; then echo "make bench-compare: give the peer benchmark script: make bench-compare PEERS=/path/to/peers.sh (it is not part of this repository)" >&2; exit 2; fi
	@if [ ! -f "$(PEERS)" ]; then echo "make bench-compare: PEERS=$(PEERS): no such file (the peer benchmark script is not part of this repository)" >&2; exit 2; fi

docker-test:
	@sh docker/test.sh

# docker/stack.yml on a two-node Swarm this machine makes itself (two
# dockerds in two network namespaces); skips where docker cannot run.
swarm-test: deps $(BUILD)/fanoutd $(BUILD)/fanout
	@FO_BUILD=$(BUILD) sh docker/swarm-test.sh

# Files with paths in them (fanout.pc, the unit) are written here, for
# this PREFIX, not taken from the build.
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/fanout \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSCONFDIR)/fanout
	install -m 755 $(BUILD)/fanoutd $(BUILD)/fanout $(DESTDIR)$(BINDIR)/
	install -m 644 $(BUILD)/libfanout.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libfanout.so $(DESTDIR)$(LIBDIR)/libfanout.so.0
	ln -sf libfanout.so.0 $(DESTDIR)$(LIBDIR)/libfanout.so
	install -m 644 $(PUB_H) $(DESTDIR)$(INCLUDEDIR)/fanout/
	sed $(PC_SED) scripts/fanout.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/fanout.pc
	install -m 644 docs/man/fanout.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 docs/man/fanoutd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 scripts/fanoutd.conf $(DESTDIR)$(DOCDIR)/fanoutd.conf
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' scripts/fanoutd.service.in \
		> $(DESTDIR)$(SYSTEMDUNITDIR)/fanoutd.service
	@# the example becomes the config only where there is none: never overwritten
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/fanout/fanoutd.conf ]; then \
		echo "install -m 644 scripts/fanoutd.conf $(DESTDIR)$(SYSCONFDIR)/fanout/fanoutd.conf"; \
		install -m 644 scripts/fanoutd.conf $(DESTDIR)$(SYSCONFDIR)/fanout/fanoutd.conf; \
	else echo "$(DESTDIR)$(SYSCONFDIR)/fanout/fanoutd.conf exists: kept (the example is in $(DOCDIR))"; fi

clean:
	rm -rf $(BUILD)

# Keep test objects (make would delete them as intermediates and rebuild).
.SECONDARY:

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
