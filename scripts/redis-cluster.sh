#!/usr/bin/env bash
# redis-cluster.sh {start|stop|status}: a private Redis Cluster for the
# cluster tests: three masters and three replicas (Debian's redis-server;
# `redis-cli --cluster create ... --cluster-replicas 1`), each listening only
# on 127.0.0.1, on ports ${EMBEDD_REDIS_CLUSTER_PORT:-7001} .. +5 (cluster bus
# ports +10000). Nothing is persisted (--save "" --appendonly no); each node's
# working dir (nodes.conf, pid, log) lives under
# ${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}/run/redis-cluster/<port>, dirs
# 0700 and files 0600 (umask 077). Every command is idempotent: start on a
# healthy cluster and stop on a stopped one succeed; start on nodes left
# from an unfinished start wipes them and creates the cluster again.
# Prints the comma-separated seed addresses (the value of
# EMBEDD_REDIS_CLUSTER_ADDRS) on start and status, once `cluster info` says
# cluster_state:ok on every node.
set -euo pipefail
umask 077
cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
base=${EMBEDD_REDIS_CLUSTER_PORT:-7001}
root=$cache/run/redis-cluster
ports=()
for i in 0 1 2 3 4 5; do ports+=($((base + i))); done
addrs=$(printf '127.0.0.1:%s,' "${ports[@]}")
addrs=${addrs%,}

cli() { local p=$1; shift; redis-cli -h 127.0.0.1 -p "$p" "$@"; }
ping() { cli "$1" ping 2>/dev/null | grep -qx PONG; }
state_ok() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok'; }
all_ok() {
  local p
  for p in "${ports[@]}"; do state_ok "$p" || return 1; done
  # three masters with one replica each
  [ "$(cli "$base" cluster nodes 2>/dev/null | grep -c master)" -eq 3 ] &&
    [ "$(cli "$base" cluster nodes 2>/dev/null | grep -c slave)" -eq 3 ]
}

install() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return
  echo "redis-cluster.sh: installing redis-server (apt)" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get install -y redis-server >&2 || { $sudo apt-get update >&2 && $sudo apt-get install -y redis-server >&2; }
}

stop_all() {
  local p
  for p in "${ports[@]}"; do
    if ping "$p"; then cli "$p" shutdown nosave >/dev/null 2>&1 || true; fi
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 100); do
      ping "$p" || break
      sleep 0.1
    done
    if ping "$p"; then echo "redis-cluster.sh: 127.0.0.1:$p still answers after shutdown" >&2; return 1; fi
    rm -f "$root/$p/redis.pid"
  done
}

case "${1:-}" in
start)
  install
  if all_ok; then echo "$addrs"; exit 0; fi
  # Anything half made (nodes up without a cluster, a failed create) is
  # thrown away: the cluster holds test data only.
  stop_all
  mkdir -p "$root"
  chmod 700 "$cache/run" "$root" 2>/dev/null || true
  for p in "${ports[@]}"; do
    d=$root/$p
    rm -rf "$d"
    mkdir -p "$d"
    redis-server --bind 127.0.0.1 --port "$p" --protected-mode yes \
      --cluster-enabled yes --cluster-config-file "$d/nodes.conf" --cluster-node-timeout 5000 \
      --save "" --appendonly no --dir "$d" \
      --daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log"
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 100); do
      ping "$p" && break
      sleep 0.1
    done
    if ! ping "$p"; then
      echo "redis-cluster.sh: no PONG from 127.0.0.1:$p after 10s; see $root/$p/redis.log" >&2
      tail -n 20 "$root/$p/redis.log" >&2 || true
      exit 1
    fi
  done
  nodes=()
  for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$root/create.log" 2>&1 || {
    echo "redis-cluster.sh: redis-cli --cluster create failed; see $root/create.log" >&2
    tail -n 20 "$root/create.log" >&2
    exit 1
  }
  for _ in $(seq 300); do
    if all_ok; then
      find "$root" -type f -exec chmod 600 {} +
      echo "$addrs"
      exit 0
    fi
    sleep 0.1
  done
  echo "redis-cluster.sh: cluster_state is not ok on every node after 30s" >&2
  cli "$base" cluster info >&2 || true
  exit 1
  ;;
stop)
  stop_all
  ;;
status)
  if all_ok; then echo "$addrs"; else echo "redis-cluster.sh: no healthy cluster on 127.0.0.1:${ports[0]}-${ports[5]}" >&2; exit 1; fi
  ;;
*)
  echo "usage: $0 {start|stop|status}" >&2
  exit 2
  ;;
esac
