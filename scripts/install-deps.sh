#!/bin/sh
# Installs the Debian packages longhaul needs to build, test and run its demo.
# Idempotent: installs only what is missing. Runs as root, or through sudo.
set -eu

PKGS="build-essential pkg-config libcurl4-openssl-dev libsqlite3-dev libpq-dev \
libmicrohttpd-dev libjansson-dev libfyaml-dev libssl-dev libcriterion-dev \
python3 python3-pytest postgresql sqlite3 curl clang libclang-rt-14-dev \
man-db groff-base"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "install-deps: missing packages:$missing (run as root or install sudo)" >&2
	exit 1
fi
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
