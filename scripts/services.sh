#!/usr/bin/env bash
# Start, stop or check the local services the test suite needs. Idempotent.
#
#   scripts/services.sh start    start a throwaway PostgreSQL cluster (or reuse the running one)
#   scripts/services.sh status   say whether it runs and where
#   scripts/services.sh stop     stop it (the data is throwaway; `stop --purge` deletes it)
#
# The cluster belongs to this checkout: its data lives in /tmp (a directory the server's
# user can always reach, whichever directory the clone is in), it listens on 127.0.0.1
# only, on a port derived from the checkout's path (the next free one if that is taken),
# and trusts local connections. The URL tests connect to is written to
# .services/postgres.url (git-ignored); `@pytest.mark.postgres` tests read it.
#
# initdb refuses to run as root, so as root the server runs as the `postgres` user (or a
# `shortcutlab-pg` system user created here when there is none). PostgreSQL is installed
# with apt-get when its binaries are missing.
set -euo pipefail

cmd=${1:-start}
repo=$(cd "$(dirname "$0")/.." && pwd)
state_dir="$repo/.services"
url_file="$state_dir/postgres.url"
key=$(printf '%s' "$repo" | sha256sum | cut -c1-10)
data_dir="${SHORTCUTLAB_PG_DATA:-/tmp/shortcutlab-pg-$key}"
database=shortcutlab
db_user=shortcutlab

log() { echo "services: $*" >&2; }

find_pg_bin() {
  local candidate
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return 0
  fi
  for candidate in /usr/lib/postgresql/*/bin; do
    [ -x "$candidate/pg_ctl" ] && [ -x "$candidate/initdb" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

install_postgres() {
  if [ "$(id -u)" -ne 0 ]; then
    log "PostgreSQL is not installed; install it (apt-get install postgresql) and re-run"
    exit 1
  fi
  log "installing PostgreSQL with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
}

# Run a command as the cluster's owner: ourselves, or a non-root user when we are root.
server_user=""
as_owner() {
  if [ -n "$server_user" ]; then
    (cd / && runuser -u "$server_user" -- "$@")
  else
    "$@"
  fi
}

pick_server_user() {
  [ "$(id -u)" -ne 0 ] && return 0
  if id postgres >/dev/null 2>&1; then
    server_user=postgres
  else
    id shortcutlab-pg >/dev/null 2>&1 || useradd --system --no-create-home shortcutlab-pg
    server_user=shortcutlab-pg
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

is_running() {
  [ -f "$data_dir/postmaster.pid" ] && as_owner "$pg_bin/pg_ctl" -D "$data_dir" status >/dev/null 2>&1
}

running_port() {
  sed -n 4p "$data_dir/postmaster.pid"
}

write_url() {
  mkdir -p "$state_dir"
  local url="postgresql://$db_user@127.0.0.1:$1/$database"
  printf '%s\n' "$url" > "$url_file.tmp"
  mv "$url_file.tmp" "$url_file"
  echo "$url"
}

start() {
  pg_bin=$(find_pg_bin) || { install_postgres; pg_bin=$(find_pg_bin); }
  pick_server_user
  if is_running; then
    local port
    port=$(running_port)
    log "PostgreSQL already running on 127.0.0.1:$port ($data_dir)"
    ensure_database "$port"
    write_url "$port"
    return 0
  fi
  if [ ! -s "$data_dir/PG_VERSION" ]; then
    rm -rf "$data_dir"
    mkdir -p "$data_dir"
    [ -n "$server_user" ] && chown "$server_user" "$data_dir"
    chmod 700 "$data_dir"
    as_owner "$pg_bin/initdb" -D "$data_dir" -U "$db_user" --auth=trust --encoding=UTF8 \
      --no-instructions >/dev/null
  fi
  local port=$((54000 + 0x${key:0:4} % 900))
  while port_in_use "$port"; do port=$((port + 1)); done
  as_owner "$pg_bin/pg_ctl" -D "$data_dir" -l "$data_dir/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data_dir -c max_connections=200 -c fsync=off" \
    >/dev/null || { log "PostgreSQL failed to start; see $data_dir/server.log"; exit 1; }
  ensure_database "$port"
  log "PostgreSQL running on 127.0.0.1:$port ($data_dir)"
  write_url "$port"
}

ensure_database() {
  local psql="$pg_bin/psql"
  [ -x "$psql" ] || psql=psql
  local exists
  exists=$("$psql" -h 127.0.0.1 -p "$1" -U "$db_user" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$database'")
  if [ "$exists" != "1" ]; then
    "$psql" -h 127.0.0.1 -p "$1" -U "$db_user" -d postgres -qc "CREATE DATABASE $database" >/dev/null
  fi
}

stop() {
  pg_bin=$(find_pg_bin) || { log "PostgreSQL is not installed; nothing to stop"; return 0; }
  pick_server_user
  if is_running; then
    as_owner "$pg_bin/pg_ctl" -D "$data_dir" -m fast -w stop >/dev/null
    log "PostgreSQL stopped"
  else
    log "PostgreSQL is not running"
  fi
  rm -f "$url_file"
  if [ "${1:-}" = "--purge" ]; then
    rm -rf "$data_dir"
  fi
}

status() {
  pg_bin=$(find_pg_bin) || { log "PostgreSQL is not installed"; return 1; }
  pick_server_user
  if is_running; then
    log "PostgreSQL running on 127.0.0.1:$(running_port) ($data_dir)"
    [ -f "$url_file" ] && cat "$url_file"
    return 0
  fi
  log "PostgreSQL is not running; start it with: $0 start"
  return 1
}

case "$cmd" in
  start) start ;;
  stop) stop "${2:-}" ;;
  status) status ;;
  *) echo "usage: $0 start|status|stop [--purge]" >&2; exit 2 ;;
esac
