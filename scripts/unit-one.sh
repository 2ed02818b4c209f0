#!/bin/sh
# Builds and runs a Criterion test file against a chosen set of sources,
# without the rest of the tree (useful while other modules are half-done).
#   sh scripts/unit-one.sh tests/unit/test_x.c src/x/*.c [more sources...]
# SAN=1 adds AddressSanitizer and UndefinedBehaviorSanitizer.
set -eu
out=/tmp/lh-unit-$$-$(basename "$1" .c)
flags="-std=gnu11 -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wstrict-prototypes -Wmissing-prototypes -D_GNU_SOURCE -Isrc -Iinclude"
[ "${SAN:-0}" = 1 ] && flags="$flags -fsanitize=address,undefined -fno-omit-frame-pointer"
# shellcheck disable=SC2046
cc $flags "$@" src/util/*.c $(pkg-config --cflags --libs libcurl sqlite3 jansson libfyaml libcrypto libmicrohttpd) -lcriterion -lpthread -lm -o "$out"
"$out" --jobs 2 ${CRITERION_ARGS:-}
rc=$?
rm -f "$out"
exit $rc
