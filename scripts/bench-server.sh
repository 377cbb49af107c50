#!/usr/bin/env bash
# bench-server.sh: load benchmark of `embedd serve` (part of `make bench`).
# Runs, on this machine, one after the other:
#   1. the server with default batching: closed loop at concurrency 1,16,64,256
#      and an open loop, short and medium texts;
#   2. the server with --max-batch-size 1 (no batching) at concurrency 1 and 64;
#   3. the baseline a user would pick instead: the same model in Python
#      onnxruntime + tokenizers, in-process, at batch sizes 1..128, on the
#      same texts;
# then prints the three target ratios (bench/summarize). Only 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out/load"
py=$(scripts/pyenv.sh)
model=${BENCH_MODEL:-all-minilm-l6-v2}
dur=${BENCH_DURATION:-8s}
addr=127.0.0.1:50071
maddr=127.0.0.1:9171
go build -o bin/embedd ./cmd/embedd
go build -o bin/load ./bench/load

pid=
stop_server() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" || true; pid=; }
trap stop_server EXIT
# The embedding cache is off: the load generator cycles through a fixed set
# of texts, which a cache would serve without running the model.
start_server() {
  bin/embedd serve --embed-cache-bytes 0 --addr $addr --metrics-addr $maddr --model "$model" "$@" >"$out/load/server-$label.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 150); do curl -sf "http://$maddr/metrics" >/dev/null && return 0; sleep 0.2; done
  echo "server did not start; see $out/load/server-$label.log" >&2; exit 1
}
load() { bin/load -addr $addr -metrics "http://$maddr/metrics" -duration "$dur" -warmup 2s "$@"; }

label=batched; start_server
load -label batched -texts short -concurrency 1,16,64,256 -rate 100 -out "$out/load/batched"
load -label batched-medium -texts medium -concurrency 1,64 -out "$out/load/batched-medium"
stop_server

label=max_batch_size=1; start_server --max-batch-size 1
load -label max_batch_size=1 -texts short -concurrency 1,64 -out "$out/load/max_batch_size=1"
stop_server

for set in short medium; do
  bin/load -texts $set -dump-texts "$out/load/texts-$set.jsonl"
  "$py" bench/baseline/ort_inprocess.py --texts "$out/load/texts-$set.jsonl" \
    "${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}/models/$model" --out "$out/load/python-$set.json" >/dev/null
done

bin/load -compare -out "$out/load/compare" "$out/load/batched" "$out/load/max_batch_size=1"
go run ./bench/summarize -server "$out"
