#!/usr/bin/env bash
# pyenv.sh: create (once) the Python virtual environment for tooling —
# golden-file generation and benchmark baselines; nothing on the serving path
# uses Python. Pinned by tools/requirements.txt; keyed by its hash so a change
# of pins makes a fresh environment. Prints the interpreter path.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
key=$(sha256sum tools/requirements.txt | cut -c1-12)
venv=$cache/pyenv-$key
if [ "${1:-}" = "--print" ]; then echo "$venv/bin/python"; exit 0; fi
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.ok" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q -r tools/requirements.txt >&2
  touch "$venv/.ok"
fi
echo "$venv/bin/python"
