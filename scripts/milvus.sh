#!/usr/bin/env bash
# milvus.sh {start|stop|status}: a real Milvus standalone server for the
# vector-store tests and benchmarks, from the PyPI package `milvus` 2.3.5
# ("Milvus Lite" wheel milvus-2.3.5-py3-none-manylinux2014_x86_64.whl, pinned
# by hash below). The wheel ships the C++/Go `milvus` binary with embedded etcd,
# rocksmq and local disk storage; it is the same server as the Docker image, so
# the Go SDK (milvus-sdk-go v2.4.2) speaks to it over gRPC as in production.
# Not used: PyPI milvus-lite 3.x, a pure-Python re-implementation of the API
# (not the Milvus server); milvus-lite 2.4/2.5 (made for pymilvus with a
# local .db file) was not tried.
#
# Layout under ${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}:
#   milvus-venv-2.3.5/   the virtual environment (created once)
#   run/milvus/          config, data, logs, pid file (wiped by `stop --wipe`)
#
# More instances run side by side under other names (tests that stop their
# server, or configure it, must not touch the shared one):
#   EMBEDD_MILVUS_NAME=x     run/x/ instead of run/milvus/ (internal ports are
#                            picked free at each start; sessions expire after
#                            5 s, so a restart after a crash takes seconds)
#   EMBEDD_MILVUS_AUTH=1     authorizationEnabled (user root, password Milvus)
#   EMBEDD_MILVUS_TLS_DIR=d  TLS on the proxy with d/server.pem, d/server.key
#                            and d/ca.pem; EMBEDD_MILVUS_TLS_MODE 1 (server
#                            TLS, the default) or 2 (mutual TLS)
#
# The gRPC proxy port is ${EMBEDD_MILVUS_PORT:-19530}; readiness is the
# server's own /healthz (all components healthy) on the metrics port
# ${EMBEDD_MILVUS_METRICS_PORT:-19091}, then a TCP connect to the proxy.
# Every component advertises 127.0.0.1; note that Milvus 2.3 binds its gRPC
# and metrics listeners to all interfaces (":port") and has no setting to
# change that, so run it on a machine or network namespace you trust.
# Idempotent: start on a healthy server and stop on a stopped one succeed.
# stop --kill sends SIGKILL (a crash) instead of SIGTERM (a graceful stop,
# which Milvus stretches to 30 s while clients are connected).
# Prints the address (host:port) on start and status.
set -euo pipefail
version=2.3.5
sha256=69515a0630ce29fd10e101fa442afea8ca1387b93a456cd9bd41fdf3deb93d04
cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
port=${EMBEDD_MILVUS_PORT:-19530}
metrics_port=${EMBEDD_MILVUS_METRICS_PORT:-19091}
venv=$cache/milvus-venv-$version
name=${EMBEDD_MILVUS_NAME:-milvus}
case $name in *[!a-zA-Z0-9_-]*|'') echo "milvus.sh: bad EMBEDD_MILVUS_NAME '$name'" >&2; exit 2 ;; esac
dir=$cache/run/$name
pidfile=$dir/milvus.pid
log=$dir/logs/milvus.log
addr=127.0.0.1:$port

healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:$metrics_port/healthz" 2>/dev/null | grep -q OK &&
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 1
  # The pid must still be our milvus binary, not a recycled pid.
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$dir/bin/milvus" ] || return 1
  echo "$pid"
}

install() {
  [ -f "$venv/.ok" ] && return
  echo "milvus.sh: installing milvus==$version into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  local req
  req=$(mktemp)
  echo "milvus==$version --hash=sha256:$sha256" >"$req"
  "$venv/bin/pip" install -q --require-hashes --no-deps -r "$req" >&2
  rm -f "$req"
  touch "$venv/.ok"
}

# prepare writes $dir/configs/milvus.yaml from the package's template and
# unpacks the binaries into $dir/bin (the package's own code does both; we run
# the binary ourselves so that we own its pid and can stop it gracefully).
prepare() {
  mkdir -p "$dir"
  "$venv/bin/python" - "$dir" "$port" "$name" >&2 <<'EOF'
import os
import socket
import sys
import milvus
d, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def try_bind_port(self, port):
    # The package's check without SO_REUSEADDR fails on a port whose
    # connections from the last run are in TIME_WAIT (a restart); Milvus
    # itself binds with SO_REUSEADDR, so check the way it binds.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


milvus.MilvusServerConfig.try_bind_port = try_bind_port
c = milvus.MilvusServerConfig(data_dir=d, proxy_port=port)
# Advertise loopback only, so components talk over 127.0.0.1.
for comp in ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode"):
    c.set(comp + ".ip", "127.0.0.1")
c.set("etcd_log_level", "warn")
if os.environ.get("EMBEDD_MILVUS_AUTH") == "1":
    c.set("common.security.authorizationEnabled", "true")
tls = os.environ.get("EMBEDD_MILVUS_TLS_DIR")
if tls:
    c.set("common.security.tlsMode", os.environ.get("EMBEDD_MILVUS_TLS_MODE", "1"))
    for key, f in (("serverPemPath", "server.pem"), ("serverKeyPath", "server.key"), ("caPemPath", "ca.pem")):
        c.set("tls." + key, os.path.join(tls, f))
if name != "milvus":
    # The embedded etcd listens on 2379/2380 unless given a config file;
    # another instance needs its own ports.
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    client, peer = (s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()
    etcd = os.path.join(d, "configs", "etcd.yaml")
    os.makedirs(os.path.dirname(etcd), exist_ok=True)
    with open(etcd, "w") as f:
        f.write(f"""name: {name}
listen-client-urls: http://127.0.0.1:{client}
advertise-client-urls: http://127.0.0.1:{client}
listen-peer-urls: http://127.0.0.1:{peer}
initial-advertise-peer-urls: http://127.0.0.1:{peer}
initial-cluster: {name}=http://127.0.0.1:{peer}
""")
if name != "milvus":
    # After a crash (stop --kill), a restarted Milvus waits for its old
    # sessions to expire: 30 s by default, 5 s for test instances.
    c.set("common.session.ttl", "5")
c.resolve()
if name != "milvus":
    # etcd.config.path is not in the package's template: add it.
    conf = os.path.join(d, "configs", "milvus.yaml")
    text = open(conf).read()
    text = text.replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd}\n", 1)
    open(conf, "w").write(text)
milvus._initialize_data_files(c.base_data_dir)
EOF
}

case "${1:-}" in
start)
  if running_pid >/dev/null && healthy; then echo "$addr"; exit 0; fi
  if running_pid >/dev/null; then
    echo "milvus.sh: pid $(cat "$pidfile") is running but not healthy; stop it first" >&2
    exit 1
  fi
  install
  prepare
  mkdir -p "$dir/logs" "$dir/run"
  rm -f "$pidfile"
  (
    cd "$dir"
    # The server writes its own pid before it execs milvus: $! would be
    # setsid's when setsid forks, and /proc/PID/exe names milvus only once
    # the exec chain (sh, nohup) is done.
    DEPLOY_MODE=STANDALONE METRICS_PORT=$metrics_port MILVUS_RUN_DIR=$dir/run \
      LD_LIBRARY_PATH=$dir/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
      MILVUSCONF=$dir/configs \
      setsid sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec nohup "$@"' "$pidfile" "$dir/bin/milvus" run standalone >"$log" 2>&1 </dev/null &
  )
  for i in $(seq 1200); do
    if healthy; then echo "$addr"; exit 0; fi
    # Give the exec chain 5 s before a missing server counts as exited.
    if [ "$i" -gt 50 ] && ! running_pid >/dev/null; then
      echo "milvus.sh: milvus exited during start; see $log" >&2
      tail -n 30 "$log" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
  echo "milvus.sh: not healthy after 120s; see $log" >&2
  tail -n 30 "$log" >&2 || true
  exit 1
  ;;
stop)
  wipe=false sig=TERM
  for a in "${@:2}"; do
    case $a in
    --wipe) wipe=true ;;
    --kill) sig=KILL ;;
    *) echo "milvus.sh: stop: unknown option $a" >&2; exit 2 ;;
    esac
  done
  pid=$(running_pid) || { rm -f "$pidfile"; if $wipe; then rm -rf "$dir"; fi; exit 0; }
  kill -$sig "$pid"
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "milvus.sh: pid $pid ignored SIGTERM for 30s; killing" >&2
    kill -KILL "$pid"
  fi
  rm -f "$pidfile"
  if $wipe; then rm -rf "$dir"; fi
  exit 0
  ;;
status)
  if running_pid >/dev/null && healthy; then echo "$addr"; else echo "milvus.sh: not running on $addr" >&2; exit 1; fi
  ;;
*)
  echo "usage: $0 {start|stop [--wipe] [--kill]|status}" >&2
  exit 2
  ;;
esac
