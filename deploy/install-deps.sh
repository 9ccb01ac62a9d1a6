#!/usr/bin/env bash
# Installs the Debian packages Lamina needs to build and run, only those that are missing.
#   build: libclang-dev + g++ (RocksDB's bindings and C++), pkg-config
#   run:   python3.11 and nodejs (the built-in runtimes), iproute2, nftables (networking),
#          util-linux (nsenter: deploy/cluster.sh and the multi-node tests start workers in network
#          namespaces with it, and with iproute2's `ip netns`)
#   tests: bubblewrap and runc (peers measured beside Lamina by the benchmark), python3-venv (boto3 and
#          the AWS CLI for the REST API tests), cmake autoconf automake libtool make (the native addon
#          of the official Node runtime client, aws-lambda-ric, built by tests/clients/install.sh),
#          wrk (the HTTP load generator of the benchmark's gateway rows), curl (the HTTP gateway tests),
#          openssl (deploy/cluster.sh's certificates; the TLS tests' `openssl s_client`)
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-deps.sh: run as root (apt-get)" >&2; exit 1; }
need=()
for pkg in libclang-dev g++ linux-libc-dev pkg-config iproute2 util-linux nftables python3.11 python3-venv bubblewrap runc cmake autoconf automake libtool make wrk curl openssl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
command -v node >/dev/null 2>&1 || need+=(nodejs)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# The built-in runtimes run the host's interpreters from /usr (bound read-only into sandboxes).
[ -x /usr/bin/python3.11 ] || { echo "install-deps.sh: /usr/bin/python3.11 is missing" >&2; exit 1; }
[ -x /usr/bin/node ] || { echo "install-deps.sh: /usr/bin/node is missing (nodejs package)" >&2; exit 1; }
command -v cargo >/dev/null 2>&1 || { echo "install-deps.sh: cargo not found: install Rust (rustup) first" >&2; exit 1; }
