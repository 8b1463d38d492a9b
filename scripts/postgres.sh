#!/usr/bin/env bash
# A real PostgreSQL server for agentrace's LangGraph checkpointer tests (PostgresSaver).
#
#   scripts/postgres.sh install       install Debian's postgresql when no server binaries are
#                                     found (needs root)
#   scripts/postgres.sh start [DIR]   initialise a throw-away cluster in DIR (default: a new temp
#                                     dir) and start it on 127.0.0.1 on a free port; prints
#                                     `postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres DIR`
#   scripts/postgres.sh stop DIR      stop the server started in DIR and remove DIR
#
# The cluster asks for a password over TCP (scram-sha-256), so a wrong password is refused as
# it would be in production; the password is random, kept in DIR/password (mode 600).
# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user that
# Debian's package creates and every server command runs as that user.
set -euo pipefail
# shellcheck source=scripts/_common.sh
source "$(dirname "$0")/_common.sh"

find_bindir() {
  if [[ -n "${AGENTRACE_PG_BINDIR:-}" ]]; then
    echo "$AGENTRACE_PG_BINDIR"
    return 0
  fi
  local d
  # The newest major version installed (Debian keeps each in /usr/lib/postgresql/N/bin).
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
      echo "$d"
      return 0
    fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

as_owner() {
  # Run a server command as the cluster's owner: ourselves, or `postgres` when we are root.
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd_install() {
  local bin
  if bin=$(find_bindir); then
    echo "postgresql present: $bin ($("$bin/postgres" --version))"
    return 0
  fi
  debian_install postgres.sh postgresql
  bin=$(find_bindir)
  echo "postgresql installed: $bin ($("$bin/postgres" --version))"
}

cmd_start() {
  local bin dir port password
  bin=$(find_bindir) || { echo "postgres.sh: no PostgreSQL server binaries (run: scripts/postgres.sh install)" >&2; return 1; }
  dir=${1:-$(mktemp -d -t agentrace-postgres.XXXXXX)}
  mkdir -p "$dir"
  port=$(free_port)
  password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
  (umask 077 && echo "$password" >"$dir/password")
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres "$dir" "$dir/password"
    runuser -u postgres -- test -r "$dir/password" \
      || { echo "postgres.sh: user postgres cannot enter $dir (a private parent dir?); leave DIR out" >&2; return 1; }
  fi
  # Local (socket) connections are trusted, TCP ones need the password.
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/password" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
    || { echo "postgres.sh: initdb failed; see $dir/initdb.log" >&2; return 1; }
  # fsync off: a test cluster, thrown away with DIR. `pg_ctl -w` returns once the server
  # accepts connections (or fails after -t seconds), so nothing here guesses a delay.
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" start >/dev/null \
    || { echo "postgres.sh: the server did not start on port $port; see $dir/postgres.log" >&2; return 1; }
  echo "$port" >"$dir/port"
  echo "postgresql://postgres:$password@127.0.0.1:$port/postgres $dir"
}

cmd_stop() {
  local dir=${1:?usage: scripts/postgres.sh stop DIR}
  local bin
  if [[ -f "$dir/data/postmaster.pid" ]] && bin=$(find_bindir); then
    # -m fast: roll back open transactions and stop now; -w: wait until it is gone.
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || {
      local pid
      pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
      [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
    }
  fi
  if [[ -f "$dir/port" || -f "$dir/password" ]]; then
    rm -rf "$dir"
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *)
    echo "usage: scripts/postgres.sh install | start [DIR] | stop DIR" >&2
    exit 2
    ;;
esac
