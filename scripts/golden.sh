#!/usr/bin/env bash
# golden.sh: regenerate every golden file from the reference implementations.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(scripts/pyenv.sh)
cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
for s in tools/*/golden.py; do
  [ -f "$s" ] && { echo "== $s"; "$py" "$s"; }
done
echo "== tools/parity/make_golden.py"
"$py" tools/parity/make_golden.py "$cache"
