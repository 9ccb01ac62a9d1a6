#!/usr/bin/env bash
# A multi-node Lamina cluster on one machine: a controller and N workers, each worker in its own
# network namespace acting as a separate host, reached over a veth pair on a bridge.
#
#   deploy/cluster.sh up N [--data DIR]   build, create the network, start controller + N workers
#   deploy/cluster.sh status              processes, namespaces and `fnctl workers`
#   deploy/cluster.sh kill I              SIGKILL worker I (a node crash: its connections get a reset)
#   deploy/cluster.sh cut I               take worker I's link down (a node vanishing from the network:
#                                         no reset; the controller notices the missed heartbeats)
#   deploy/cluster.sh down                stop everything, remove namespaces, veths, bridge (idempotent)
#
# Network (LAMINA_CLUSTER_SUBNET, default 10.213.0.0/24, must be a /24 unused on this machine):
#   bridge lamina-br0 in the root namespace with .1; netns lamina-wI with eth0 = .(10+I) (veth peer of
#   lamina-vI on the bridge), loopback up, default route via .1 only. Nothing is forwarded or NATed:
#   an nftables table `lamina_cluster` drops any forwarding to or from the bridge, in case the host
#   forwards for someone else. The controller serves gRPC on .1:9670 (reachable from the host, so
#   fnctl uses it: `source DIR/cluster.env`) and the REST API on LAMINA_CLUSTER_REST_LISTEN
#   (default 127.0.0.1:9680). Each worker listens on .(10+I):9671, has worker id lamina-wI, its own
#   state directory DIR/worker-I, uid range 200000+(I-1)*65536 (65536 uids) and MemTotal minus 1 GiB
#   divided by N as memory (LAMINA_CLUSTER_WORKER_MEMORY_MB overrides).
# DIR defaults to LAMINA_CLUSTER_DATA or /var/lib/lamina-cluster (controller data, worker state, logs).
# Other settings: LAMINA_BIN_DIR (use these binaries, do not build), CARGO_TARGET_DIR,
#   LAMINA_CLUSTER_WORKER_TIMEOUT_MS (controller --worker-timeout-ms, default 5000),
#   LAMINA_CLUSTER_CONTROLLER_ARGS / LAMINA_CLUSTER_WORKER_ARGS (extra flags, split on spaces).
# Workers are started with `nsenter --net=...`, not `ip netns exec`: the latter remounts /sys, which
# hides the cgroup hierarchies the worker needs.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly BRIDGE=lamina-br0
readonly NS_PREFIX=lamina-w
readonly VETH_PREFIX=lamina-v
readonly NFT_TABLE=lamina_cluster
readonly STATE_FILE=/run/lamina-cluster.state
readonly CONTROLLER_PORT=9670
readonly WORKER_PORT=9671
readonly MAX_WORKERS=100
readonly READY_TIMEOUT_S=60
readonly STOP_GRACE_S=15

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*"; }

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

# LAMINA_CLUSTER_SUBNET -> the first three octets ("10.213.0").
subnet_prefix() {
  local subnet="${LAMINA_CLUSTER_SUBNET:-10.213.0.0/24}" a b c
  [[ "$subnet" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.0/24$ ]] ||
    die "LAMINA_CLUSTER_SUBNET must be a /24 like 10.213.0.0/24, got '$subnet'"
  a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} c=${BASH_REMATCH[3]}
  for o in "$a" "$b" "$c"; do
    [ "$o" -le 255 ] || die "LAMINA_CLUSTER_SUBNET has an octet above 255: '$subnet'"
  done
  echo "$a.$b.$c"
}

require_root() {
  [ "$(id -u)" = 0 ] || die "run as root: it creates network namespaces, and workers create cgroups"
}

require_tools() {
  local t
  for t in ip nsenter setsid; do
    command -v "$t" >/dev/null 2>&1 || die "'$t' is missing: run deploy/install-deps.sh (iproute2, util-linux)"
  done
}

# The state file: what `up` created, read by `down`, `status`, `kill`, `cut`.
state_get() {
  local key="$1"
  [ -f "$STATE_FILE" ] || return 0
  sed -n "s/^$key=//p" "$STATE_FILE" | head -n1
}

# Whether /proc/PID runs `name` (guards against a recycled pid in a stale pid file).
pid_runs() {
  local pid="$1" name="$2"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"
}

# Waits until none of the pids is alive, at most `seconds`; returns 1 if some still are.
wait_gone() {
  local seconds="$1"; shift
  local i pid alive
  for ((i = 0; i < seconds * 10; i++)); do
    alive=0
    for pid in "$@"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  return 1
}

# SIGTERM, then SIGKILL after the grace period.
stop_pids() {
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  if ! wait_gone "$STOP_GRACE_S" "$@"; then
    log "still running after ${STOP_GRACE_S}s, killing: $*"
    kill -KILL "$@" 2>/dev/null || true
    wait_gone 5 "$@" || true
  fi
}

# Waits for a line starting with `prefix` in `logfile` while `pid` lives.
wait_ready() {
  local what="$1" pid="$2" logfile="$3" prefix="$4" i
  for ((i = 0; i < READY_TIMEOUT_S * 10; i++)); do
    if grep -q "^$prefix" "$logfile" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      grep -v '^[[:space:]]' "$logfile" | tail -n 10 >&2 || true
      die "$what exited before it was ready (log: $logfile)"
    fi
    sleep 0.1
  done
  grep -v '^[[:space:]]' "$logfile" | tail -n 10 >&2 || true
  die "$what was not ready within ${READY_TIMEOUT_S}s (log: $logfile)"
}

# Namespaces of this script that exist now: lamina-w1, lamina-w2, ...
our_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${NS_PREFIX}[0-9]+$" || true
}

# Kills what a worker's sandboxes left (a SIGKILLed worker cannot) and removes their cgroups.
reap_cgroups() {
  local id="$1" dir child pid try alive
  local -a roots=()
  for dir in /sys/fs/cgroup/*/lamina/"$id" /sys/fs/cgroup/lamina/"$id"; do
    [ -d "$dir" ] && roots+=("$dir")
  done
  [ ${#roots[@]} -gt 0 ] || return 0
  for ((try = 0; try < 50; try++)); do
    alive=0
    for dir in "${roots[@]}"; do
      for child in "$dir"/*/; do
        [ -f "$child/cgroup.procs" ] || continue
        while read -r pid; do
          [ -n "$pid" ] || continue
          alive=1
          kill -KILL "$pid" 2>/dev/null || true
        done <"$child/cgroup.procs"
        # Frozen tasks die only once thawed.
        if [ -f "$child/freezer.state" ]; then echo THAWED 2>/dev/null >"$child/freezer.state" || true; fi
        if [ -f "$child/cgroup.freeze" ]; then echo 0 2>/dev/null >"$child/cgroup.freeze" || true; fi
      done
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for dir in "${roots[@]}"; do
    for child in "$dir"/*/; do
      if [ -d "$child" ]; then rmdir "$child" 2>/dev/null || true; fi
    done
    rmdir "$dir" 2>/dev/null || true
  done
}

cmd_down() {
  require_root
  local ns data i
  data=$(state_get data)
  # Workers first (SIGTERM: each destroys its sandboxes and its helper processes), found by
  # namespace: only processes that run in the namespaces this script created.
  local -a worker_pids=() leftover=()
  for ns in $(our_namespaces); do
    for i in $(ip netns pids "$ns" 2>/dev/null || true); do
      if pid_runs "$i" "lamina-worker .*--worker-id"; then worker_pids+=("$i"); fi
    done
  done
  if [ ${#worker_pids[@]} -gt 0 ]; then
    log "stopping workers (pids ${worker_pids[*]})"
    stop_pids "${worker_pids[@]}"
  fi
  # Whatever is left in them (a killed worker's spawner or zygote).
  for ns in $(our_namespaces); do
    for i in $(ip netns pids "$ns" 2>/dev/null || true); do leftover+=("$i"); done
  done
  if [ ${#leftover[@]} -gt 0 ]; then
    kill -KILL "${leftover[@]}" 2>/dev/null || true
    wait_gone 5 "${leftover[@]}" || true
  fi
  for ns in $(our_namespaces); do reap_cgroups "$ns"; done
  if [ -n "$data" ] && [ -f "$data/run/controller.pid" ]; then
    local cpid
    cpid=$(cat "$data/run/controller.pid")
    if pid_runs "$cpid" lamina-controller; then
      log "stopping the controller (pid $cpid)"
      stop_pids "$cpid"
    fi
    rm -f "$data/run/controller.pid"
  fi
  # Veths first (deleting one end removes the pair at once; a namespace's own go asynchronously).
  for i in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^${VETH_PREFIX}[0-9]+$" || true); do
    ip link del "$i" 2>/dev/null || true
  done
  for ns in $(our_namespaces); do ip netns del "$ns"; done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  if command -v nft >/dev/null 2>&1 && nft list table inet "$NFT_TABLE" >/dev/null 2>&1; then
    nft delete table inet "$NFT_TABLE"
  fi
  rm -f "$STATE_FILE"
  log "down: no namespaces, veths, bridge or processes of the cluster left"
}

setup_network() {
  local prefix="$1" n="$2" i ns veth
  ip link add "$BRIDGE" type bridge
  ip addr add "$prefix.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  if command -v nft >/dev/null 2>&1; then
    # Not a router: nothing from the namespaces leaves the bridge, even if this host forwards.
    nft -f - <<EOF || log "warning: could not add the nftables table $NFT_TABLE (forwarding is $(cat /proc/sys/net/ipv4/ip_forward))"
table inet $NFT_TABLE {
  chain forward {
    type filter hook forward priority 0; policy accept;
    # Routed traffic only: frames bridged between the namespaces (worker to worker, e.g. the
    # VPC VXLAN tunnels) pass this hook too when br_netfilter is on, and must stay allowed.
    iifname "$BRIDGE" oifname != "$BRIDGE" drop
    oifname "$BRIDGE" iifname != "$BRIDGE" drop
  }
}
EOF
  fi
  for ((i = 1; i <= n; i++)); do
    ns="$NS_PREFIX$i" veth="$VETH_PREFIX$i"
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE"
    ip link set "$veth" up
    nsenter --net="/run/netns/$ns" ip link set lo up
    nsenter --net="/run/netns/$ns" ip addr add "$prefix.$((10 + i))/24" dev eth0
    nsenter --net="/run/netns/$ns" ip link set eth0 up
    nsenter --net="/run/netns/$ns" ip route add default via "$prefix.1"
  done
}

binaries() {
  if [ -n "${LAMINA_BIN_DIR:-}" ]; then
    echo "$LAMINA_BIN_DIR"
    return
  fi
  deploy/install-deps.sh >&2
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/lamina-target}"
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust, or set LAMINA_BIN_DIR to built binaries"
  cargo build --workspace --bins --lib --locked >&2
  echo "$CARGO_TARGET_DIR/debug"
}

default_worker_memory_mb() {
  local n="$1" total_kb total_mb
  total_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  total_mb=$((total_kb / 1024))
  local usable=$((total_mb - 1024))
  [ "$usable" -ge $((total_mb / 2)) ] || usable=$((total_mb / 2))
  echo $((usable / n))
}

cmd_up() {
  require_root
  require_tools
  local n="" data="${LAMINA_CLUSTER_DATA:-/var/lib/lamina-cluster}"
  while [ $# -gt 0 ]; do
    case "$1" in
      --data) [ $# -ge 2 ] || die "--data needs a directory"; data="$2"; shift 2 ;;
      --data=*) data="${1#--data=}"; shift ;;
      -*) die "unknown option '$1' (up N [--data DIR])" ;;
      *) [ -z "$n" ] || die "unexpected argument '$1' (up N [--data DIR])"; n="$1"; shift ;;
    esac
  done
  if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt "$MAX_WORKERS" ]; then
    die "the number of workers must be 1..$MAX_WORKERS, got '${n}'"
  fi
  local prefix
  prefix=$(subnet_prefix)
  if [ -f "$STATE_FILE" ] || ip link show "$BRIDGE" >/dev/null 2>&1 || [ -n "$(our_namespaces)" ]; then
    die "a cluster is already up (or left over): run 'deploy/cluster.sh down' first"
  fi
  if ip -o -4 addr show | grep -q " inet $prefix\."; then
    die "$prefix.0/24 is already used on this machine: choose another LAMINA_CLUSTER_SUBNET"
  fi
  local bin
  bin=$(binaries)
  if [ ! -x "$bin/lamina-controller" ] || [ ! -x "$bin/lamina-worker" ]; then
    die "no lamina-controller / lamina-worker in $bin"
  fi
  data=$(mkdir -p "$data" && cd "$data" && pwd)
  mkdir -p "$data/controller" "$data/logs" "$data/run"
  printf 'data=%s\nworkers=%s\nprefix=%s\nbin=%s\n' "$data" "$n" "$prefix" "$bin" >"$STATE_FILE"
  # Any failure from here on (set -e, die) undoes what was created.
  trap 'echo "cluster.sh: up failed: cleaning up" >&2; cmd_down >&2' EXIT

  setup_network "$prefix" "$n"
  log "network: bridge $BRIDGE $prefix.1/24, namespaces ${NS_PREFIX}1..$n"

  local endpoint="https://$prefix.1:$CONTROLLER_PORT"
  local rest="${LAMINA_CLUSTER_REST_LISTEN:-127.0.0.1:9680}"
  make_tls "$data/tls" "$prefix" "$n" "${rest%:*}"
  log "tls: cluster CA $data/tls/ca.pem (every listener https, controller <-> worker mTLS)"
  local -a controller_extra=() worker_extra=()
  read -r -a controller_extra <<<"${LAMINA_CLUSTER_CONTROLLER_ARGS:-}"
  read -r -a worker_extra <<<"${LAMINA_CLUSTER_WORKER_ARGS:-}"
  : >"$data/logs/controller.log"
  setsid "$bin/lamina-controller" --listen "$prefix.1:$CONTROLLER_PORT" --rest-listen "$rest" \
    --data-dir "$data/controller" --worker-timeout-ms "${LAMINA_CLUSTER_WORKER_TIMEOUT_MS:-5000}" \
    --tls-cert "$data/tls/controller.pem" --tls-key "$data/tls/controller-key.pem" \
    --tls-ca "$data/tls/ca.pem" \
    "${controller_extra[@]}" </dev/null >>"$data/logs/controller.log" 2>&1 &
  local cpid=$!
  echo "$cpid" >"$data/run/controller.pid"
  wait_ready controller "$cpid" "$data/logs/controller.log" "lamina-controller listening on"
  log "controller (pid $cpid) on $endpoint, REST on https://$rest"

  local memory="${LAMINA_CLUSTER_WORKER_MEMORY_MB:-$(default_worker_memory_mb "$n")}" i wpid
  for ((i = 1; i <= n; i++)); do
    : >"$data/logs/worker-$i.log"
    setsid nsenter --net="/run/netns/$NS_PREFIX$i" -- "$bin/lamina-worker" \
      --controller "$endpoint" --listen "$prefix.$((10 + i)):$WORKER_PORT" \
      --state-dir "$data/worker-$i" --worker-id "$NS_PREFIX$i" \
      --uid-base $((200000 + (i - 1) * 65536)) --uid-count 65536 --memory-mb "$memory" \
      --cluster-token-file "$data/controller/auth/cluster-token" \
      --tls-cert "$data/tls/worker-$i.pem" --tls-key "$data/tls/worker-$i-key.pem" \
      --tls-ca "$data/tls/ca.pem" \
      "${worker_extra[@]}" </dev/null >>"$data/logs/worker-$i.log" 2>&1 &
    wpid=$!
    echo "$wpid" >"$data/run/worker-$i.pid"
  done
  for ((i = 1; i <= n; i++)); do
    wait_ready "worker $i" "$(cat "$data/run/worker-$i.pid")" "$data/logs/worker-$i.log" "lamina-worker "
    log "worker $NS_PREFIX$i (pid $(cat "$data/run/worker-$i.pid")) on $prefix.$((10 + i)):$WORKER_PORT, ${memory} MB"
  done
  trap - EXIT
  cat >"$data/cluster.env" <<EOF
export FNCTL_ENDPOINT=$endpoint
export FNCTL_CREDENTIALS=$data/controller/auth/admin-credentials.json
export FNCTL_CA=$data/tls/ca.pem
export AWS_CA_BUNDLE=$data/tls/ca.pem
export PATH=$bin:\$PATH
EOF
  log "up: $n workers. Use it with: source $data/cluster.env && fnctl workers"
  log "logs in $data/logs; stop with: deploy/cluster.sh down"
}

cmd_status() {
  local data prefix n i ns pids up=1 cpid
  if [ ! -f "$STATE_FILE" ]; then
    echo "no cluster (no $STATE_FILE)"
    [ -z "$(our_namespaces)" ] || echo "left over namespaces: $(our_namespaces | tr '\n' ' ')(run down)"
    return 1
  fi
  data=$(state_get data) prefix=$(state_get prefix) n=$(state_get workers)
  cpid=$(cat "$data/run/controller.pid" 2>/dev/null || true)
  if pid_runs "$cpid" lamina-controller; then
    echo "controller  pid $cpid  https://$prefix.1:$CONTROLLER_PORT  data $data/controller"
  else
    echo "controller  NOT RUNNING (log: $data/logs/controller.log)"; up=0
  fi
  for ((i = 1; i <= n; i++)); do
    ns="$NS_PREFIX$i"
    if [ ! -e "/run/netns/$ns" ]; then
      echo "worker $i    namespace $ns missing"; up=0; continue
    fi
    pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    local link
    link=$(ip -br link show "$VETH_PREFIX$i" 2>/dev/null | awk '{print $2}')
    echo "worker $i    netns $ns  $prefix.$((10 + i)):$WORKER_PORT  link ${link:-missing}  pids ${pids:-none}"
    [ -n "$pids" ] && [ "$link" != DOWN ] || up=0
  done
  local fnctl
  fnctl="$(state_get bin)/fnctl"
  if [ -x "$fnctl" ] && pid_runs "$cpid" lamina-controller; then
    echo
    FNCTL_ENDPOINT="https://$prefix.1:$CONTROLLER_PORT" FNCTL_CA="$data/tls/ca.pem" \
      FNCTL_CREDENTIALS="$data/controller/auth/admin-credentials.json" "$fnctl" workers || up=0
  fi
  [ "$up" = 1 ]
}

# TLS material under DIR (openssl, ECDSA P-256): the cluster CA (created once; key 0600) and, at
# every start, certificates good for server and client authentication: the controller's for
# loopback, the bridge address PREFIX.1 and the REST host, worker I's for PREFIX.(10+I).
make_tls() {
  local dir=$1 prefix=$2 n=$3 rest_host=$4 i san
  mkdir -p "$dir" && chmod 700 "$dir"
  if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca-key.pem" ]; then
    (umask 077 && openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca-key.pem")
    openssl req -x509 -new -key "$dir/ca-key.pem" -sha256 -days 3650 \
      -subj "/O=Lamina/CN=Lamina cluster CA" \
      -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$dir/ca.pem" 2>/dev/null
  fi
  san="DNS:localhost,IP:127.0.0.1,IP:::1,IP:$prefix.1"
  case "$rest_host" in
    ''|0.0.0.0|'[::]'|127.0.0.1|localhost) ;;
    *[!0-9.]*) san="$san,DNS:$rest_host" ;;
    *) san="$san,IP:$rest_host" ;;
  esac
  issue_cert "$dir" controller "$san"
  for ((i = 1; i <= n; i++)); do
    issue_cert "$dir" "worker-$i" "DNS:localhost,IP:127.0.0.1,IP:$prefix.$((10 + i))"
  done
}

issue_cert() {
  local dir=$1 name=$2 san=$3
  (umask 077 && openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$name-key.pem")
  openssl req -new -key "$dir/$name-key.pem" -subj "/CN=lamina $name" -out "$dir/$name.csr"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -CAcreateserial -days 730 -sha256 -out "$dir/$name.pem" -extfile <(printf '%s\n' \
      "subjectAltName=$san" "extendedKeyUsage=serverAuth,clientAuth" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=CA:FALSE" \
      "authorityKeyIdentifier=keyid" "subjectKeyIdentifier=hash") 2>/dev/null
  rm -f "$dir/$name.csr"
}

worker_index() {
  local i="${1:-}" n
  n=$(state_get workers)
  [ -n "$n" ] || die "no cluster is up"
  if ! [[ "$i" =~ ^[0-9]+$ ]] || [ "$i" -lt 1 ] || [ "$i" -gt "$n" ]; then
    die "worker index must be 1..$n, got '$i'"
  fi
  echo "$i"
}

cmd_kill() {
  require_root
  local i pids
  i=$(worker_index "$@")
  pids=$(ip netns pids "$NS_PREFIX$i" 2>/dev/null || true)
  [ -n "$pids" ] || die "worker $i is not running"
  # shellcheck disable=SC2086 # one pid per word
  kill -KILL $pids
  log "worker $i killed (pids $(echo "$pids" | tr '\n' ' ')); its sandboxes are reaped by 'down'"
}

cmd_cut() {
  require_root
  local i
  i=$(worker_index "$@")
  ip link set "$VETH_PREFIX$i" down
  log "worker $i cut off the network (link $VETH_PREFIX$i down): it keeps running, unreachable"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; [ $# -eq 0 ] || die "down takes no arguments"; cmd_down ;;
  status) shift; cmd_status ;;
  kill) shift; cmd_kill "$@" ;;
  cut) shift; cmd_cut "$@" ;;
  *) usage ;;
esac
