# longhaul: GNU Make with pkg-config.
#   make            build build/longhaul and build/longhaul-mockllm
#   make demo       install missing packages, build, run the demo job
#   make test       install, build, run every test (plain, then ASan+UBSan)
#   make bench      run the benchmarks and print figures
# SAN=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer into build-san/.

CC ?= cc
ifeq ($(SAN),1)
BUILD ?= build-san
OPT = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
OPT = -O2 -g
endif

PKGS = libcurl sqlite3 jansson libfyaml libcrypto libmicrohttpd
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

.PHONY: all deps demo test test-plain test-san test-unit test-proc bench clean

all: $(BUILD)/longhaul $(BUILD)/longhaul-mockllm

deps:
	@sh scripts/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

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

test-plain: all $(BUILD)/test-unit
	$(BUILD)/test-unit --jobs 2
	LONGHAUL_BUILD=$(CURDIR)/$(BUILD) LONGHAUL_SAN=$(SAN) $(PYTEST) -q -p no:cacheprovider tests/proc

test-unit: $(BUILD)/test-unit
	$(BUILD)/test-unit

bench:
	@sh scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(UNIT_OBJ:.o=.d)
