#!/bin/sh
# Runs a command against a throwaway PostgreSQL cluster:
#   sh scripts/pg-test.sh CMD [ARGS...]
# initdb and pg_ctl (Debian's postgresql package) make a cluster in a
# temporary directory, listening on 127.0.0.1 only, on a free port; the
# command runs with LH_TEST_PG_URL=postgresql://postgres@127.0.0.1:PORT/postgres
# (trust authentication: no password anywhere); the cluster is stopped and
# removed when the command ends, whether it passed or not. initdb refuses
# root, so as root the cluster belongs to the `postgres` system user.
set -eu

bindir=
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
	if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
		bindir=$d
		break
	fi
done
if [ -z "$bindir" ]; then
	echo "pg-test: no PostgreSQL server found under /usr/lib/postgresql (install the postgresql package)" >&2
	exit 1
fi

tmp=$(mktemp -d /tmp/lh-pg-XXXXXX)
chmod 755 "$tmp"
as=""
if [ "$(id -u)" = 0 ]; then
	chown postgres: "$tmp"
	as="runuser -u postgres --"
fi

cleanup() {
	$as "$bindir/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free port: the kernel picks one, which stays free for a moment.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

$as "$bindir/initdb" -D "$tmp/data" -U postgres -A trust -E UTF8 --locale=C >"$tmp/initdb.log" 2>&1 || {
	cat "$tmp/initdb.log" >&2
	echo "pg-test: initdb failed" >&2
	exit 1
}
# Durability is not under test here: no fsync makes CREATE DATABASE cheap.
$as "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 30 \
	-o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$tmp -c fsync=off \
-c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null || {
	cat "$tmp/server.log" >&2
	echo "pg-test: the server did not start" >&2
	exit 1
}

export LH_TEST_PG_URL="postgresql://postgres@127.0.0.1:$port/postgres"
echo "pg-test: PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
set +e
"$@"
rc=$?
set -e
exit $rc
