# longhaul: GNU Make with pkg-config.
#   make            build build/longhaul and build/longhaul-mockllm
#   make demo       install missing packages, build, run the demo job
#   make test       install, build, run every test (plain, then ASan+UBSan, then the fuzz seeds);
#                   each pass runs the store suites a second time against a throwaway PostgreSQL
#   make test-pg    only the store suites against PostgreSQL (scripts/pg-test.sh)
#   make bench      run the benchmarks and print figures
#   make install    install into $(DESTDIR)$(PREFIX) (default /usr/local); make uninstall
#   make test-repeat N=5   run the process tests N times, stopping at the first failure
# SAN=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer into build-san/.

CC ?= cc
ifeq ($(SAN),1)
BUILD ?= build-san
OPT = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
OPT = -O2 -g
endif

PKGS = libcurl sqlite3 libpq jansson libfyaml libcrypto libmicrohttpd
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS))

CFLAGS_ALL = -std=gnu11 $(OPT) -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wshadow -Wstrict-prototypes -Wmissing-prototypes -fvisibility=hidden \
	-D_GNU_SOURCE -Isrc -Iinclude $(PKG_CFLAGS) -MMD -MP $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lpthread -lm $(LDLIBS)

LIB_SRC := $(shell find src -name '*.c' ! -path 'src/cli/*' | sort)
CLI_SRC := $(sort $(wildcard src/cli/*.c))
MOCK_SRC := $(sort $(wildcard tools/mockllm/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/*.c tests/store/*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/obj/%.o)

PYTEST = /usr/bin/python3 -m pytest
# The process tests, against the binaries in $(BUILD).
PROC_TESTS = LONGHAUL_BUILD=$(CURDIR)/$(BUILD) LONGHAUL_SAN=$(SAN) $(PYTEST) -q -p no:cacheprovider tests/proc

.PHONY: all deps demo test test-plain test-san test-unit test-pg test-proc test-repeat bench clean install uninstall

all: $(BUILD)/longhaul $(BUILD)/longhaul-mockllm

deps:
	@sh scripts/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# libfyaml's headers carry no version: `longhaul --version` takes pkg-config's.
$(BUILD)/obj/src/io/version.o: CFLAGS_ALL += -DLH_LIBFYAML_VERSION='"$(shell pkg-config --modversion libfyaml)"'

$(BUILD)/liblonghaul.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/longhaul: $(CLI_OBJ) $(BUILD)/liblonghaul.a
	$(CC) $(CFLAGS_ALL) -o $@ $(CLI_OBJ) $(BUILD)/liblonghaul.a $(LDLIBS_ALL)

# The simulator stands alone: it must not share longhaul's code paths.
$(BUILD)/longhaul-mockllm: $(MOCK_SRC) $(wildcard tools/mockllm/*.h)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(OPT) -Wall -Wextra -Werror -pthread $(MOCK_SRC) \
		$(shell pkg-config --cflags --libs jansson libcrypto) -lm -o $@

$(BUILD)/test-unit: $(UNIT_OBJ) $(BUILD)/liblonghaul.a
	$(CC) $(CFLAGS_ALL) -o $@ $(UNIT_OBJ) $(BUILD)/liblonghaul.a $(LDLIBS_ALL) -lcriterion

demo:
	@sh scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@sh examples/demo.sh

test:
	@sh scripts/install-deps.sh
	@$(MAKE) --no-print-directory test-plain
	@$(MAKE) --no-print-directory SAN=1 test-plain
	@$(MAKE) --no-print-directory fuzz-smoke

# The store suites on PostgreSQL (suites *_pg*) skip unless LH_TEST_PG_URL is
# set; scripts/pg-test.sh starts a cluster of its own and sets it.
PG_SUITES = '*_pg*/*'

test-plain: all $(BUILD)/test-unit
	sh scripts/unit-run.sh $(BUILD)/test-unit
	sh scripts/pg-test.sh sh scripts/unit-run.sh $(BUILD)/test-unit --filter $(PG_SUITES)
	$(PROC_TESTS)

test-pg: $(BUILD)/test-unit
	sh scripts/pg-test.sh sh scripts/unit-run.sh $(BUILD)/test-unit --filter $(PG_SUITES)

test-unit: $(BUILD)/test-unit
	$(BUILD)/test-unit

# Runs the process tests N times in a row, to shake out flaky ones.
N ?= 5
test-repeat: all
	@i=1; while [ $$i -le $(N) ]; do \
		echo "test-repeat: round $$i of $(N)"; \
		$(PROC_TESTS) || { echo "test-repeat: round $$i of $(N) failed"; exit 1; }; \
		i=$$((i + 1)); \
	done; \
	echo "test-repeat: every round passed ($(N))"

bench:
	@sh scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh

clean:
	rm -rf build build-san build-fuzz

# ---- installing ----
#   make install                  the binaries, man pages, shell completions and systemd unit
#   make install PREFIX=/usr DESTDIR=/tmp/pkg     (for packaging)
#   make uninstall                the same variables remove what install put there
# The unit's ExecStart names $(BINDIR)/longhaul. Directories are left in place.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL ?= install

INSTALLED = $(BINDIR)/longhaul $(BINDIR)/longhaul-mockllm \
	$(MANDIR)/man1/longhaul.1 $(MANDIR)/man5/longhaul-spec.5 \
	$(BASHCOMPDIR)/longhaul $(ZSHCOMPDIR)/_longhaul $(UNITDIR)/longhaul.service

install: all docs/man/longhaul.1 docs/man/longhaul-spec.5 completions/longhaul.bash completions/_longhaul \
		examples/longhaul.service
	$(INSTALL) -D -m 0755 $(BUILD)/longhaul $(DESTDIR)$(BINDIR)/longhaul
	$(INSTALL) -D -m 0755 $(BUILD)/longhaul-mockllm $(DESTDIR)$(BINDIR)/longhaul-mockllm
	$(INSTALL) -D -m 0644 docs/man/longhaul.1 $(DESTDIR)$(MANDIR)/man1/longhaul.1
	$(INSTALL) -D -m 0644 docs/man/longhaul-spec.5 $(DESTDIR)$(MANDIR)/man5/longhaul-spec.5
	$(INSTALL) -D -m 0644 completions/longhaul.bash $(DESTDIR)$(BASHCOMPDIR)/longhaul
	$(INSTALL) -D -m 0644 completions/_longhaul $(DESTDIR)$(ZSHCOMPDIR)/_longhaul
	sed 's|/usr/local/bin/longhaul|$(BINDIR)/longhaul|g' examples/longhaul.service | \
		$(INSTALL) -D -m 0644 /dev/stdin $(DESTDIR)$(UNITDIR)/longhaul.service

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# ---- fuzzing (docs/fuzzing.md) ----
#   make fuzz                       build every libFuzzer target into build-fuzz/
#   make fuzz-run FUZZ_SECONDS=30   fuzz each target for that long (default 20)
#   make fuzz-smoke                 run each target over its committed seeds only
# clang only (libFuzzer). The parsers' sources are built with coverage
# instrumentation (fuzzer-no-link); each target links only what it uses.
FUZZ_CC ?= clang
FUZZ_BUILD = build-fuzz
FUZZ_SECONDS ?= 20
FUZZ_MAX_LEN ?= 8192
FUZZ_TARGETS = fuzz_batch_line fuzz_spec fuzz_template fuzz_sse fuzz_completion fuzz_jscan_diff
FUZZ_SAN = address,undefined
FUZZ_CFLAGS = -std=gnu11 -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
	-Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -Isrc -Iinclude $(PKG_CFLAGS) -MMD -MP
FUZZ_LIB_SRC = src/util/buf.c src/util/err.c src/util/mem.c src/util/url.c src/util/vec.c \
	src/io/batch.c src/io/body.c src/io/json.c src/io/lines.c src/io/spec.c src/io/spec_steps.c src/io/template.c \
	src/io/text.c \
	src/io/completion.c src/llm/classify.c src/util/jscan.c src/llm/sse.c
FUZZ_LIB_OBJ = $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_BINS = $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)
FUZZ_ENV = ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: fuzz fuzz-run fuzz-smoke

fuzz: $(FUZZ_BINS)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -c $< -o $@

$(FUZZ_BUILD)/libfuzzsrc.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_BUILD)/libfuzzsrc.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror -fsanitize=fuzzer,$(FUZZ_SAN) -o $@ $< $(FUZZ_BUILD)/libfuzzsrc.a \
		$(PKG_LIBS) -lpthread -lm

# New inputs go to build-fuzz/corpus/<target>, crashes to
# build-fuzz/artifacts/; the committed seeds are only read.
fuzz-run: $(FUZZ_BINS)
	@mkdir -p $(FUZZ_BUILD)/artifacts
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
		dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
		echo "fuzz-run: $$t for $(FUZZ_SECONDS) s"; \
		$(FUZZ_ENV) $(FUZZ_BUILD)/$$t $$dict -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- \
			$(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t || exit 1; \
	done

fuzz-smoke: $(FUZZ_BINS)
	@mkdir -p $(FUZZ_BUILD)/artifacts
	@for t in $(FUZZ_TARGETS); do \
		$(FUZZ_ENV) $(FUZZ_BUILD)/$$t -runs=0 -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- \
			tests/fuzz/corpus/$$t >$(FUZZ_BUILD)/$$t.smoke.log 2>&1 \
			|| { cat $(FUZZ_BUILD)/$$t.smoke.log; echo "fuzz-smoke: $$t FAILED"; exit 1; }; \
		echo "fuzz-smoke: $$t ok ($$(ls tests/fuzz/corpus/$$t | wc -l) seeds)"; \
	done; \
	echo "fuzz-smoke: $(words $(FUZZ_TARGETS)) passed, 0 failed"

-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_BINS:=.d)

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(UNIT_OBJ:.o=.d)
