#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on loopback, starting them if they are installed
# here but stopped. Fails with a clear message when it cannot.
set -euo pipefail

PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"

answers() { # host port
  python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

wait_for() { # name host port
  for _ in $(seq 1 30); do
    if answers "$2" "$3"; then return 0; fi
    sleep 1
  done
  return 1
}

if ! answers "$PGHOST" "$PGPORT"; then
  echo "PostgreSQL is not answering on $PGHOST:$PGPORT; trying to start it..."
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
  elif command -v pg_ctl >/dev/null 2>&1 && [ -n "${PGDATA:-}" ]; then
    pg_ctl -D "$PGDATA" -l "${PGDATA}/server.log" start || true
  fi
  if ! wait_for postgres "$PGHOST" "$PGPORT"; then
    echo "ERROR: PostgreSQL is not running on $PGHOST:$PGPORT and could not be started." >&2
    echo "Start it (e.g. 'pg_ctlcluster <version> main start') or set DATABASE_URL." >&2
    exit 1
  fi
fi

if ! answers "$REDIS_HOST" "$REDIS_PORT"; then
  echo "Redis is not answering on $REDIS_HOST:$REDIS_PORT; trying to start it..."
  if command -v redis-server >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
  if ! wait_for redis "$REDIS_HOST" "$REDIS_PORT"; then
    echo "ERROR: Redis is not running on $REDIS_HOST:$REDIS_PORT and could not be started." >&2
    echo "Install and start redis-server, or set REDIS_URL to a running one." >&2
    exit 1
  fi
fi
echo "PostgreSQL ($PGHOST:$PGPORT) and Redis ($REDIS_HOST:$REDIS_PORT) are answering."
