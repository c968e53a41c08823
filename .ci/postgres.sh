#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the state tests and prints its URL on stdout.
# Installs Debian's `postgresql` when it is missing. The cluster lives in a fresh directory, owned
# by the `postgres` user (initdb refuses root), listens on 127.0.0.1 only, and is stopped with
# `.ci/postgres.sh stop DIR`.
set -euo pipefail

if [[ "${1:-}" == "stop" ]]; then
    dir="$2"
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    exit 0
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing postgresql (Debian packages)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

dir=$(mktemp -d /tmp/etl-ci-pg.XXXXXX)
chown postgres "$dir"
chmod 700 "$dir"
port=${ETL_CI_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
password="ci-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
printf '%s\n' "$password" > "$dir/pw"
chown postgres "$dir/pw"
runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 \
    --pwfile="$dir/pw" -E UTF8 --locale=C.UTF-8 >&2
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off" start >&2
export PGPASSWORD="$password"
"$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -q -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE etl LOGIN PASSWORD '$password'" -c "CREATE DATABASE etl_test OWNER etl" >&2
echo "$dir postgres://etl:$password@127.0.0.1:$port/etl_test"
