#!/usr/bin/env bash
# bench.sh: the benchmarks behind `make bench`, and the exporter check behind
# `make verify-export`. Everything runs on this machine in one go so ratios
# compare like with like.
#
# Usage: scripts/bench.sh [SECTION...]   (default: every section, in this order)
#   tokenizer  Go vs Hugging Face tokenizers, same corpus and tokenizer.json
#   quant      quantization kernels; quality on real embeddings
#   memory     engine memory over 10,000 batches
#   cache      embedding cache: no-repeat overhead, Zipf(1.1, 100k texts)
#              speedup (two engines, alternating rounds), cost per text (~4 min)
#   server     gRPC server under load (scripts/bench-server.sh)
#   stores     upsert pipeline, Redis, embedded and Milvus search (make services)
#   features   ingest, GetFeatures in process and over gRPC (make services)
#   reembed    embedd reembed end to end vs the engine alone, same texts
#              (EMBEDD_REEMBED_N short texts, default 10,000; on the embedded
#              store, and on Milvus + Redis when EMBEDD_MILVUS_ADDR and
#              EMBEDD_REDIS_ADDR are set, as make services does)
#   reembed-online  online Embed p50/p99 at a fixed rate alone, and while a
#              `reembed --server` job runs against the same server (with and
#              without --max-rate); ratios per round (bench/reembed/online,
#              EMBEDD_REEMBED_ONLINE_FLAGS adds its flags; about 2 min)
#   parity     engine vs the Python reference pipeline (TestParity, about 1 min)
#   exporter   tools/bertonnx/verify.py and verify_variants.py: the exported
#              graphs vs an independent numpy BertModel (about 10 min on 2 cores)
#
# Raw output lands in bench/out/ (not committed). Then tools/bench/results.py
# writes each section's numbers, with the date, commit and CPU model, to
# bench/results/<section>.json and rebuilds bench/results/README.md from all of
# them. Both are committed; the README's numbers point at them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out"
py=$(scripts/pyenv.sh)
export EMBEDD_REQUIRE_ASSETS=1 EMBEDD_REQUIRE_STORES=1

all=(tokenizer quant memory cache server stores features reembed reembed-online parity exporter)
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=("${all[@]}")
for s in "${sections[@]}"; do
  [[ " ${all[*]} " == *" $s "* ]] || { echo "bench.sh: unknown section '$s'; known: ${all[*]}" >&2; exit 2; }
done

bench_tokenizer() {
  echo "== tokenizer: Go vs Hugging Face tokenizers (same corpus, same tokenizer.json)"
  go test -run '^$' -bench 'BenchmarkEncode/(all|english)/(full|max128)/(single|parallel)$' -benchtime 2s ./internal/tokenize | tee "$out/tokenize-go.txt"
  for subset in all english; do
    for ml in 0 128; do
      "$py" bench/tokenize/hf_tokenizers_bench.py --subset $subset --max-length $ml --seconds 3
    done
  done | tee "$out/tokenize-hf.jsonl"
}

bench_quant() {
  echo "== quantization kernels (ns/vector)"
  go test -run '^$' -bench . -benchtime 300ms -benchmem ./internal/quant | tee "$out/quant-go.txt"
  echo "== quantization quality on real embeddings"
  go run ./bench/quantquality -json "$out/quant-quality.json" | tee "$out/quant-quality.txt"
}

bench_memory() {
  echo "== memory over 10,000 batches"
  go test -run '^$' -bench BenchmarkEmbedMemory -benchtime 1x ./internal/engine 2>/dev/null | tee "$out/engine-memory.txt"
}

bench_cache() {
  echo "== embedding cache: no-repeat overhead %, Zipf(1.1, 100k texts) speedup, cache cost per text"
  go test -run '^$' -bench BenchmarkEmbedCache -benchtime 12x -count 3 -timeout 30m ./internal/engine 2>/dev/null | tee "$out/engine-cache.txt"
  go test -run '^$' -bench BenchmarkCache -benchtime 1s -count 3 ./internal/embedcache | tee "$out/embedcache.txt"
}

bench_server() {
  echo "== gRPC server under load"
  scripts/bench-server.sh
}

# Stores and features need the servers `make bench` starts (make services).
bench_stores() {
  echo "== upsert pipeline: validate, quantize, both stores (embedded; Milvus + Redis)"
  go test -run '^$' -bench UpsertVectors -benchtime 40x ./internal/index | tee "$out/stores-upsert.txt"
  echo "== Redis: pipelined Get of 100 entities"
  go test -run '^$' -bench RedisGet100 -benchtime 2000x ./bench/stores | tee "$out/stores-redis.txt"
  echo "== embedded store: top-10 search over 100,000 vectors, recall@10 vs exact"
  go test -run '^$' -bench EmbeddedSearch100k -benchtime 1x -timeout 60m ./bench/stores | tee "$out/stores-embedded-search.txt"
  echo "== Milvus: upsert, top-10 search over 100,000 vectors, recall@10 vs exact"
  go run ./bench/stores/milvus -n 100000 -queries 300 -consistency Strong,Bounded -ef 128 | tee "$out/stores-milvus.txt"
}

bench_features() {
  echo "== features: ingest events/s; GetFeatures p50/p99 (1 and 100 entities x 50 features)"
  go test -run '^$' -bench 'Ingest|GetFeatures' -benchtime 2s ./internal/features/service | tee "$out/features.txt"
  echo "== features: GetFeatures over gRPC (loopback, client in the same process)"
  go test -run '^$' -bench GetFeaturesRPC -benchtime 2s ./internal/server | tee -a "$out/features.txt"
}

bench_reembed() {
  echo "== reembed: job items/s end to end vs the engine alone (same texts, same run)"
  go test -run '^$' -bench BenchmarkReembed -benchtime 1x -timeout 60m ./cmd/embedd | tee "$out/reembed.txt"
}

# Writes bench/results/reembed-online.{json,md} itself (not tools/bench/results.py).
bench_reembed-online() {
  echo "== reembed-online: online p50/p99 alone vs with a reembed --server job (with and without --max-rate)"
  go build -o bin/embedd ./cmd/embedd
  go build -o bin/load ./bench/load
  # shellcheck disable=SC2086
  go run ./bench/reembed/online -out "$out/reembed-online" ${EMBEDD_REEMBED_ONLINE_FLAGS:-} | tee "$out/reembed-online.txt"
}

bench_parity() {
  echo "== embedding parity: engine vs Python tokenizers + onnxruntime (TestParity asserts the bounds)"
  go test -count=1 -run '^TestParity$' -v ./internal/engine 2>&1 | grep -v ' INFO ' | tee "$out/parity.txt"
}

bench_exporter() {
  echo "== exporter: Go-built ONNX graphs vs a float64 numpy BertModel, onnx.checker, canonical protobuf"
  go build -o bin/embedd ./cmd/embedd
  "$py" tools/bertonnx/verify.py --embedd bin/embedd --json "$out/exporter-verify.json" | tee "$out/exporter-verify.txt"
  "$py" tools/bertonnx/verify_variants.py --embedd bin/embedd --json "$out/exporter-variants.json" | tee "$out/exporter-variants.txt"
}

for s in "${sections[@]}"; do
  "bench_$s"
done

if [ ${#sections[@]} -eq ${#all[@]} ]; then
  echo
  go run ./bench/summarize "$out"
fi
filed=()
for s in "${sections[@]}"; do
  [ "$s" = reembed-online ] || filed+=("$s") # it files its own results
done
[ ${#filed[@]} -eq 0 ] || "$py" tools/bench/results.py --out "$out" --results bench/results "${filed[@]}"
