#!/usr/bin/env bash
# bench.sh: the benchmarks behind `make bench`. Everything runs on this
# machine in one go so ratios compare like with like; results land in
# bench/out/ and a summary is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out"
py=$(scripts/pyenv.sh)
export EMBEDD_REQUIRE_ASSETS=1 EMBEDD_REQUIRE_STORES=1

echo "== tokenizer: Go vs Hugging Face tokenizers (same corpus, same tokenizer.json)"
go test -run '^$' -bench 'BenchmarkEncode/(all|english)/(full|max128)/(single|parallel)$' -benchtime 2s ./internal/tokenize | tee "$out/tokenize-go.txt"
for subset in all english; do
  for ml in 0 128; do
    "$py" bench/tokenize/hf_tokenizers_bench.py --subset $subset --max-length $ml --seconds 3
  done
done | tee "$out/tokenize-hf.jsonl"

echo "== quantization kernels (ns/vector)"
go test -run '^$' -bench . -benchtime 300ms -benchmem ./internal/quant | tee "$out/quant-go.txt"

echo "== quantization quality on real embeddings"
go run ./bench/quantquality -json "$out/quant-quality.json" | tee "$out/quant-quality.txt"

echo "== memory over 10,000 batches"
go test -run '^$' -bench BenchmarkEmbedMemory -benchtime 1x ./internal/engine 2>/dev/null | tee "$out/engine-memory.txt"

echo "== gRPC server under load"
scripts/bench-server.sh

# Stores and features need the servers `make bench` starts (make services).
echo "== upsert pipeline: validate, quantize, both stores (embedded; Milvus + Redis)"
go test -run '^$' -bench UpsertVectors -benchtime 40x ./internal/index | tee "$out/stores-upsert.txt"
echo "== Redis: pipelined Get of 100 entities"
go test -run '^$' -bench RedisGet100 -benchtime 2000x ./bench/stores | tee "$out/stores-redis.txt"
echo "== embedded store: top-10 search over 100,000 vectors, recall@10 vs exact"
go test -run '^$' -bench EmbeddedSearch100k -benchtime 1x -timeout 60m ./bench/stores | tee "$out/stores-embedded-search.txt"
echo "== Milvus: upsert, top-10 search over 100,000 vectors, recall@10 vs exact"
go run ./bench/stores/milvus -n 100000 -queries 300 -consistency Strong,Bounded -ef 128 | tee "$out/stores-milvus.txt"
echo "== features: ingest events/s; GetFeatures p50/p99 (1 and 100 entities x 50 features)"
go test -run '^$' -bench 'Ingest|GetFeatures' -benchtime 2s ./internal/features/service | tee "$out/features.txt"
echo "== features: GetFeatures over gRPC (loopback, client in the same process)"
go test -run '^$' -bench GetFeaturesRPC -benchtime 2s ./internal/server | tee -a "$out/features.txt"

echo
go run ./bench/summarize "$out"
