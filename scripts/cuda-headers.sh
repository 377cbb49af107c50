#!/usr/bin/env bash
# cuda-headers.sh: what `go build -tags cuda` needs on a machine without the
# CUDA toolkit, installed once into ${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}/cuda-<version>:
#
#   include/     the CUDA 12.9 headers (cuda.h: the driver API) from the PyPI
#                wheel nvidia-cuda-runtime-cu12==12.9.79, pinned by sha256.
#                gorgonia.org/cu v0.9.6 compiles against 12.x headers; the
#                13.0 cuda.h changed cuCtxCreate and cuMemAdvise and it fails.
#   stubs/       libcuda.so, a link stub (SONAME libcuda.so.1) with an empty
#                function for every driver API entry point that cuda.h
#                declares, built here with gcc from that header. No package
#                ships one (the wheels carry no lib/stubs). A binary linked
#                against it needs the real libcuda.so.1 of the NVIDIA driver
#                to start; the stub is never on a loader path.
#
# Prints the cgo settings for the build, as shell: eval "$(scripts/cuda-headers.sh)".
set -euo pipefail
cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
version=12.9.79
wheel_name=nvidia_cuda_runtime_cu12-$version-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
wheel_url=https://files.pythonhosted.org/packages/bc/46/a92db19b8309581092a3add7e6fceb4c301a3fd233969856a8cbf042cd3c/$wheel_name
wheel_sha256=25bba2dfb01d48a9b59ca474a1ac43c6ebf7011f1b0b8cc44f54eb6ac48a96c3
dir=$cache/cuda-$version

if [ ! -f "$dir/.ok" ]; then
  rm -rf "$dir" && mkdir -p "$dir" "$cache/downloads"
  whl=$cache/downloads/$wheel_sha256.whl
  if ! echo "$wheel_sha256  $whl" | sha256sum -c --status - 2>/dev/null; then
    echo "cuda-headers.sh: downloading $wheel_name" >&2
    curl -fsSL --retry 3 -o "$whl.tmp" "$wheel_url"
    echo "$wheel_sha256  $whl.tmp" | sha256sum -c --quiet - >&2
    mv "$whl.tmp" "$whl"
  fi
  python3 - "$whl" "$dir/include" <<'EOF'
import sys, zipfile
prefix = "nvidia/cuda_runtime/include/"
with zipfile.ZipFile(sys.argv[1]) as z:
    for m in z.infolist():
        if m.filename.startswith(prefix) and not m.is_dir():
            m.filename = m.filename[len(prefix):]
            z.extract(m, sys.argv[2])
EOF
  mkdir -p "$dir/stubs"
  # Every cu* function cuda.h declares, under the names its macros map them
  # to (cuCtxCreate -> cuCtxCreate_v2, ...): the symbols libcuda.so.1 exports.
  echo '#include <cuda.h>' | gcc -E -I"$dir/include" -x c - \
    | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u \
    | sed 's/.*/void &(void) {}/' > "$dir/stubs/libcuda.c"
  gcc -shared -fPIC -nostdlib -Wl,-soname,libcuda.so.1 -o "$dir/stubs/libcuda.so" "$dir/stubs/libcuda.c"
  touch "$dir/.ok"
fi
# -O2 -g are cgo's defaults, which setting the variables would otherwise drop.
printf "export CGO_CFLAGS='-O2 -g -I%s'\n" "$dir/include"
printf "export CGO_LDFLAGS='-O2 -g -L%s'\n" "$dir/stubs"
