#!/usr/bin/env bash
# A real RabbitMQ broker for agentrace's broker tests (tests/broker/).
#
#   scripts/rabbitmq.sh install       install Debian's rabbitmq-server when none is found (needs root)
#   scripts/rabbitmq.sh start [DIR]   start one node on 127.0.0.1 on free ports, in DIR (default: a
#                                     new temp dir), its data, logs, cookie and epmd all private to
#                                     DIR; prints `amqp://guest:guest@127.0.0.1:PORT/ DIR`
#   scripts/rabbitmq.sh stop DIR      stop the node (and its epmd) started in DIR and remove DIR
#
# `start` exits 4 when no rabbitmq-server is installed.
#
# The node runs without plugins and without the system-wide service: the package is installed
# with services kept from starting, and every node we start has its own node name, ports and
# Erlang port mapper, so several can run side by side and none outlives `stop`.
set -euo pipefail

find_binary() {
  if [[ -n "${AGENTRACE_RABBITMQ_SERVER:-}" ]]; then
    echo "$AGENTRACE_RABBITMQ_SERVER"
    return 0
  fi
  # The unwrapped script: Debian's /usr/sbin wrapper switches to the rabbitmq user, whose
  # home and cookie we do not want.
  local p
  for p in /usr/lib/rabbitmq/bin/rabbitmq-server /usr/local/lib/rabbitmq/bin/rabbitmq-server; do
    if [[ -x "$p" ]]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

find_epmd() {
  local p
  for p in "$(command -v epmd || true)" /usr/bin/epmd /usr/lib/erlang/bin/epmd; do
    if [[ -n "$p" && -x "$p" ]]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

free_port() {
  # Bind port 0 and let the kernel choose; the port is free again once this returns.
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

package_version() {
  dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo unknown
}

cmd_install() {
  if bin=$(find_binary); then
    echo "rabbitmq-server present: $bin ($(package_version))"
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "rabbitmq.sh: no rabbitmq-server; install one as root: apt-get install -y rabbitmq-server" >&2
    return 1
  fi
  if ! command -v apt-get >/dev/null; then
    echo "rabbitmq.sh: no rabbitmq-server and no apt-get to install one" >&2
    return 1
  fi
  # policy-rc.d keeps the package from starting the system-wide broker (and its epmd) on 5672:
  # no use to us, and it would outlive CI. Our nodes run on free ports in temp dirs.
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
  [[ $created -eq 1 ]] && rm -f "$policy"
  bin=$(find_binary)
  echo "rabbitmq-server installed: $bin ($(package_version))"
}

amqp_ready() {
  # Ready when the port answers the AMQP 0-9-1 protocol header with a Connection.Start frame
  # (frame type 1, class 10, method 10): the broker has booted, not just bound its socket.
  python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
    s.sendall(b"AMQP\x00\x00\x09\x01")
    head = s.recv(11)
    sys.exit(0 if len(head) == 11 and head[0] == 1 and head[7:11] == b"\x00\x0a\x00\x0a" else 1)
EOF
}

cmd_start() {
  local bin epmd dir port dist_port epmd_port node
  # Exit status 4 when nothing is installed, so a caller can tell it from a failed start.
  bin=$(find_binary) || { echo "rabbitmq.sh: no rabbitmq-server (run: scripts/rabbitmq.sh install)" >&2; return 4; }
  epmd=$(find_epmd) || { echo "rabbitmq.sh: no epmd (Erlang's port mapper) next to rabbitmq-server" >&2; return 1; }
  dir=${1:-$(mktemp -d -t agentrace-rabbitmq.XXXXXX)}
  mkdir -p "$dir/mnesia" "$dir/log"
  port=$(free_port)
  dist_port=$(free_port)
  epmd_port=$(free_port)
  node="agentrace-$port@localhost"
  echo "$port" >"$dir/port"
  # No plugins (the management UI alone adds seconds to boot); guest may log in from loopback;
  # a tiny disk limit so a nearly full test disk does not block publishers.
  echo '[].' >"$dir/enabled_plugins"
  cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$port
disk_free_limit.absolute = 1MB
log.file.level = info
log.console = false
EOF
  # Our own port mapper on a private port: the node finds it through ERL_EPMD_PORT and does not
  # start a shared one that would outlive this node.
  "$epmd" -port "$epmd_port" -address 127.0.0.1 >"$dir/log/epmd.log" 2>&1 &
  echo $! >"$dir/epmd.pid"
  (
    export HOME="$dir" ERL_EPMD_PORT="$epmd_port" ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$port"
    export RABBITMQ_DIST_PORT="$dist_port" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
    exec setsid "$bin" >"$dir/log/stdout.log" 2>&1 </dev/null
  ) &
  echo $! >"$dir/server.pid"
  # Ready when the broker answers AMQP; at most 60 s (600 × 0.1 s), and at once if it died.
  local i pid
  pid=$(cat "$dir/server.pid")
  for i in $(seq 600); do
    if amqp_ready "$port"; then
      echo "amqp://guest:guest@127.0.0.1:$port/ $dir"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "rabbitmq.sh: rabbitmq-server exited while starting; see $dir/log" >&2
      tail -n 20 "$dir/log/stdout.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "rabbitmq.sh: rabbitmq-server did not answer AMQP on port $port within 60 s; see $dir/log" >&2
  return 1
}

stop_pid() {
  # SIGTERM, gone within 15 s, or SIGKILL.
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

cmd_stop() {
  local dir=${1:?usage: scripts/rabbitmq.sh stop DIR}
  # The Erlang VM (beam.smp) writes its own pid; the launcher script's pid is the fallback.
  local f
  for f in rabbitmq.pid server.pid epmd.pid; do
    if [[ -s "$dir/$f" ]]; then
      stop_pid "$(cat "$dir/$f")"
    fi
  done
  if [[ -f "$dir/port" ]]; then
    rm -rf "$dir"
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *)
    echo "usage: scripts/rabbitmq.sh install | start [DIR] | stop DIR" >&2
    exit 2
    ;;
esac
