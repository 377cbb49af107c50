#!/usr/bin/env bash
# run.sh LABEL REDIS_ADDR [SERVE FLAGS...]: start `embedd serve` (bin/embedd,
# `make build`) on REDIS_ADDR (one node, or a cluster's comma-separated
# seeds) on 127.0.0.1:50071 (metrics :9171), run bench/featureload against
# it with $LOADFLAGS, passing the pids of the redis-server processes that
# listen on REDIS_ADDR's ports (for their CPU), and stop the server.
# Used for bench/results/feature-capacity.md, e.g.
#   bench/featureload/run.sh single 127.0.0.1:6390
#   LOADFLAGS="-entities 1000 -events 60" bench/featureload/run.sh cluster-nocache \
#     "$(scripts/redis-cluster.sh status)" --feature-cache-ttl -1s
set -euo pipefail
label=$1 raddr=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin/embedd serve --addr 127.0.0.1:50071 --metrics-addr 127.0.0.1:9171 --http-addr "" --data-dir "$work/data" \
  --model all-minilm-l6-v2-int8 --threads 1 --redis-addr "$raddr" \
  --redis-feature-prefix embedd-bench:fst: --redis-session-prefix embedd-bench:sess: --redis-prefix embedd-bench:ent: "$@" >"$work/serve.log" 2>&1 &
spid=$!
for _ in $(seq 150); do curl -sf http://127.0.0.1:9171/metrics >/dev/null && break; sleep 0.2; done
ports=$(echo "$raddr" | tr ',' '\n' | sed 's/.*://' | paste -sd'|')
pids=$(pgrep -d, -f "redis-server 127.0.0.1:($ports)( |$)" || true)
# shellcheck disable=SC2086
go run ./bench/featureload -addr 127.0.0.1:50071 -metrics http://127.0.0.1:9171/metrics -label "$label" -redis-pids "$pids" ${LOADFLAGS:-} || { tail -20 "$work/serve.log" >&2; kill "$spid"; exit 1; }
kill "$spid"
wait "$spid" 2>/dev/null || true
