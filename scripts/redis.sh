#!/usr/bin/env bash
# A real redis-server for agentrace's Redis tests and benchmarks.
#
#   scripts/redis.sh install       install Debian's redis-server when no binary is found (needs root)
#   scripts/redis.sh start [DIR]   start one on 127.0.0.1 on a free port, in DIR (default: a new
#                                  temp dir), without persistence; prints `redis://127.0.0.1:PORT DIR`
#   scripts/redis.sh stop DIR      stop the server started in DIR and remove DIR
#
# The tests do not need `start`: their fixture starts and stops its own server from the
# binary (tests/redis/conftest.py). `start` is for trying a worker by hand.
set -euo pipefail
# shellcheck source=scripts/_common.sh
source "$(dirname "$0")/_common.sh"

find_binary() {
  if [[ -n "${AGENTRACE_REDIS_SERVER:-}" ]]; then
    echo "$AGENTRACE_REDIS_SERVER"
    return 0
  fi
  local p
  for p in "$(command -v redis-server || true)" /usr/bin/redis-server /usr/sbin/redis-server; do
    if [[ -n "$p" && -x "$p" ]]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

cmd_install() {
  if bin=$(find_binary); then
    echo "redis-server present: $bin ($("$bin" --version | cut -d' ' -f3))"
    return 0
  fi
  debian_install redis.sh redis-server
  bin=$(find_binary)
  echo "redis-server installed: $bin ($("$bin" --version | cut -d' ' -f3))"
}

cmd_start() {
  local bin dir port
  bin=$(find_binary) || { echo "redis.sh: no redis-server binary (run: scripts/redis.sh install)" >&2; return 1; }
  dir=${1:-$(mktemp -d -t agentrace-redis.XXXXXX)}
  mkdir -p "$dir"
  port=$(free_port)
  # --save "" and --appendonly no: nothing is written to disk, so nothing from an earlier
  # server is loaded into this one.
  "$bin" --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  echo "$port" >"$dir/port"
  # Ready when it answers PING; at most 10 s (100 × 0.1 s).
  local i
  for i in $(seq 100); do
    if python3 - "$port" <<'EOF' 2>/dev/null; then
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
EOF
      echo "redis://127.0.0.1:$port $dir"
      return 0
    fi
    sleep 0.1
  done
  echo "redis.sh: redis-server did not answer on port $port; see $dir/redis.log" >&2
  return 1
}

cmd_stop() {
  local dir=${1:?usage: scripts/redis.sh stop DIR}
  if [[ -f "$dir/redis.pid" ]]; then
    stop_pid "$(cat "$dir/redis.pid")"
  fi
  if [[ -f "$dir/port" ]]; then
    rm -rf "$dir"
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *)
    echo "usage: scripts/redis.sh install | start [DIR] | stop DIR" >&2
    exit 2
    ;;
esac
