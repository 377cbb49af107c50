#!/usr/bin/env bash
# golden.sh: regenerate every golden file from the reference implementations
# (Hugging Face tokenizers, numpy, Python onnxruntime, DuckDB, SciPy,
# zoneinfo). The outputs are
# committed and never edited by hand; `git diff` after this shows what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(scripts/pyenv.sh)
cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
run() { echo "== $*" >&2; "$py" "$@"; }
run tools/tokenize/make_corpus.py
run tools/tokenize/golden.py
run tools/quant/gen_golden.py
run tools/parity/make_golden.py "$cache"
run tools/features/window/make_golden.py
run tools/features/drift/make_golden.py
run tools/features/registry/make_golden.py
