#!/usr/bin/env bash
# bench.sh: the benchmarks behind `make bench`. Everything runs on this
# machine in one go so ratios compare like with like; results land in
# bench/out/ and a summary is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out"
py=$(scripts/pyenv.sh)
export EMBEDD_REQUIRE_ASSETS=1

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

echo
go run ./bench/summarize "$out"
