#!/usr/bin/env bash
# bench-server.sh: load benchmark of `embedd serve` (part of `make bench`).
# Runs, on this machine, one after the other, on the same generated texts:
#   1. fp32 (BENCH_MODEL) with default batching: closed loop at concurrency
#      1,16,64,256 and an open loop, short texts; c=1,64 on medium texts;
#   2. the same with --max-batch-size 1 (no batching) at c=1,16,64,256;
#   3. the int8 model (BENCH_Q8_MODEL, VNNI/AMX) with default batching, c=1,64;
#   4. a Zipf(1.1) workload over 100,000 texts at c=64, embedding cache off,
#      then on (the serve default);
#   5. the baseline a user would pick instead: the same models in Python
#      onnxruntime + tokenizers, in-process, at batch sizes 1..128, on the
#      same texts; and ONNX Runtime's own GEMM peak on this CPU;
# then prints the targets table (go run ./bench/summarize -server). Only
# 127.0.0.1. The embedding cache is off except in the Zipf cache-on run: the
# other runs cycle through a fixed set of texts, which a cache would serve
# without running the model.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out/load"
py=$(scripts/pyenv.sh)
model=${BENCH_MODEL:-all-minilm-l6-v2}
q8=${BENCH_Q8_MODEL:-all-minilm-l6-v2-q8}
dur=${BENCH_DURATION:-8s}
models=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}/models
addr=127.0.0.1:50071
maddr=127.0.0.1:9171
go build -o bin/embedd ./cmd/embedd
go build -o bin/load ./bench/load

pid=
stop_server() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" || true; pid=; }
trap stop_server EXIT
# start_server LABEL MODEL [FLAGS...]
start_server() {
  local label=$1 m=$2
  shift 2
  bin/embedd serve --embed-cache-bytes 0 --addr $addr --metrics-addr $maddr --model "$m" "$@" >"$out/load/server-$label.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 150); do curl -sf "http://$maddr/metrics" >/dev/null && return 0; sleep 0.2; done
  echo "server did not start; see $out/load/server-$label.log" >&2; exit 1
}
load() { bin/load -addr $addr -metrics "http://$maddr/metrics" -duration "$dur" -warmup 2s "$@"; }

start_server batched "$model"
load -label batched -texts short -concurrency 1,16,64,256 -rate 100 -out "$out/load/batched"
load -label batched-medium -texts medium -concurrency 1,64 -out "$out/load/batched-medium"
stop_server

start_server max_batch_size=1 "$model" --max-batch-size 1
load -label max_batch_size=1 -texts short -concurrency 1,16,64,256 -out "$out/load/max_batch_size=1"
stop_server

start_server q8 "$q8"
load -label q8 -texts short -concurrency 1,64 -out "$out/load/q8"
stop_server

# Later flags win: the cache-on run sets the serve default back.
for cache in off on; do
  if [ $cache = on ]; then start_server zipf-cache-on "$model" --embed-cache-bytes 268435456; else start_server zipf-cache-off "$model"; fi
  load -label "zipf-cache-$cache" -texts short -n 100000 -zipf 1.1 -concurrency 64 -out "$out/load/zipf-cache-$cache"
  stop_server
done

for set in short medium; do
  bin/load -texts $set -dump-texts "$out/load/texts-$set.jsonl"
  "$py" bench/baseline/ort_inprocess.py --texts "$out/load/texts-$set.jsonl" "$models/$model" --out "$out/load/python-$set.json" >/dev/null
done
"$py" bench/baseline/ort_inprocess.py --texts "$out/load/texts-short.jsonl" "$models/$q8" --out "$out/load/python-q8-short.json" >/dev/null
"$py" bench/baseline/gemm_peak.py --out "$out/load/gemm-peak.json" >/dev/null
cp "$models/$model/config.json" "$out/load/config-fp32.json"
cp "$models/$q8/config.json" "$out/load/config-q8.json"

bin/load -compare -out "$out/load/compare" "$out/load/batched" "$out/load/max_batch_size=1" "$out/load/q8"
go run ./bench/summarize -server "$out"
