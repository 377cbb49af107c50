#!/usr/bin/env bash
# redis.sh {start|stop|status}: a private Redis for the online-store tests and
# benchmarks, listening only on 127.0.0.1:${EMBEDD_REDIS_PORT:-6390} (not the
# default 6379, so it never meets a system Redis). Nothing is persisted
# (--save "" --appendonly no); the working dir, pid file and log live under
# ${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}/run/redis. Installs the Debian
# redis-server package when it is missing. Every command is idempotent:
# start on a running instance and stop on a stopped one succeed.
# Prints the address (host:port) on start and status.
set -euo pipefail
cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
port=${EMBEDD_REDIS_PORT:-6390}
dir=$cache/run/redis
pidfile=$dir/redis.pid
log=$dir/redis.log
addr=127.0.0.1:$port

ping() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -qx PONG; }

install() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return
  echo "redis.sh: installing redis-server (apt)" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get install -y redis-server >&2 || { $sudo apt-get update >&2 && $sudo apt-get install -y redis-server >&2; }
}

case "${1:-}" in
start)
  install
  mkdir -p "$dir"
  if ping; then echo "$addr"; exit 0; fi
  redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes \
    --save "" --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$pidfile" --logfile "$log"
  for _ in $(seq 100); do
    if ping; then echo "$addr"; exit 0; fi
    sleep 0.1
  done
  echo "redis.sh: no PONG from $addr after 10s; see $log" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
  ;;
stop)
  if ping; then redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true; fi
  for _ in $(seq 100); do
    ping || break
    sleep 0.1
  done
  if ping; then echo "redis.sh: $addr still answers after shutdown" >&2; exit 1; fi
  rm -f "$pidfile"
  ;;
status)
  if ping; then echo "$addr"; else echo "redis.sh: not running on $addr" >&2; exit 1; fi
  ;;
*)
  echo "usage: $0 {start|stop|status}" >&2
  exit 2
  ;;
esac
