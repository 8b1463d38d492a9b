# Shared by the scripts that install and start a service for the tests (sourced, not run).

# Bind port 0 and let the kernel choose; the port is free again once this returns.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# apt_install NAME PACKAGE...: install Debian packages as root, quietly, without starting the
# system-wide service a package would start (policy-rc.d): no use to the tests, and it would
# outlive CI; their servers run on free ports in temp dirs. NAME prefixes the error lines.
apt_install() {
  local name=$1
  shift
  if [[ $(id -u) -ne 0 ]]; then
    echo "$name: not root; install as root: apt-get install -y $*" >&2
    return 1
  fi
  if ! command -v apt-get >/dev/null; then
    echo "$name: no apt-get to install $*" >&2
    return 1
  fi
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  local status=0
  DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || status=$?
  [[ $created -eq 1 ]] && rm -f "$policy"
  return $status
}
