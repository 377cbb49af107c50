#!/usr/bin/env bash
# golden.sh: regenerate every golden file and generated table from the
# reference implementations (Hugging Face tokenizers, numpy, Python
# onnxruntime, DuckDB, SciPy, zoneinfo): first the tokenizer's Unicode tables
# (internal/tokenize/tables.go, what tokenizers answers per code point), then
# the golden files. The outputs are committed and never edited by hand;
# `git diff` after this shows what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(scripts/pyenv.sh)
cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
run() { echo "== $*" >&2; "$py" "$@"; }
run tools/tokenize/gen_tables.py -o internal/tokenize/tables.go
gofmt -l internal/tokenize/tables.go | grep . && { echo "golden.sh: tables.go is not gofmt-clean" >&2; exit 1; }
run tools/tokenize/make_corpus.py
run tools/tokenize/golden.py
run tools/quant/gen_golden.py
run tools/parity/make_golden.py "$cache"
run tools/features/window/make_golden.py
run tools/features/drift/make_golden.py
run tools/features/registry/make_golden.py
