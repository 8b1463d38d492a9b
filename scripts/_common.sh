# Shared by scripts/redis.sh and scripts/rabbitmq.sh (sourced, not run).

free_port() {
  # Bind port 0 and let the kernel choose; the port is free again once this returns.
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# debian_install SCRIPT PACKAGE: install Debian's PACKAGE quietly, as root, without letting it
# start its system-wide service: that would be of no use to us (our servers run on free ports
# in temp dirs) and would outlive CI. Fails with one line when not root or without apt-get.
debian_install() {
  local script=$1 package=$2
  if [[ $(id -u) -ne 0 ]]; then
    echo "$script: no $package; install it as root: apt-get install -y $package" >&2
    return 1
  fi
  if ! command -v apt-get >/dev/null; then
    echo "$script: no $package and no apt-get to install it" >&2
    return 1
  fi
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  local status=0
  DEBIAN_FRONTEND=noninteractive apt-get update -qq || status=$?
  if [[ $status -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null || status=$?
  fi
  [[ $created -eq 1 ]] && rm -f "$policy"
  return $status
}

# stop_pid PID: SIGTERM, gone within 15 s, or SIGKILL.
stop_pid() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}
