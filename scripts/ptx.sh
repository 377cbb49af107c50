#!/usr/bin/env bash
# ptx.sh: build internal/accel/cudakernels/kernels.ptx from kernels.cu, and
# check it; no GPU, CUDA toolkit or driver needed. Tools, from PyPI wheels
# pinned by version and sha256, installed once into
# ${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}/ptx-<version>:
#
#   lib/libnvrtc.so.12, lib/libnvrtc-builtins.so.12.9
#                NVRTC 12.9 (nvidia-cuda-nvrtc-cu12==12.9.86), which compiles
#                CUDA C++ to PTX on the CPU; driven here through Python
#                ctypes, so nothing is compiled against its header.
#   bin/ptxas    the PTX assembler of CUDA 12.9 (nvidia-cuda-nvcc-cu12==12.9.86),
#                used by `check` only, to assemble the PTX as the driver's
#                JIT would and report registers, shared memory and spills.
#
# Usage: scripts/ptx.sh gen    write kernels.ptx and kernels.ptx.sha256 (the
#                              sha256 of kernels.cu and kernels.ptx) in place
#                              (`make ptx`)
#        scripts/ptx.sh check  regenerate into a temporary directory and fail
#                              if the committed files differ; assemble the PTX
#                              with ptxas for every architecture in ARCHS and
#                              fail on any error, warning, spill or local
#                              memory use; print each kernel's resources
#                              (`make ptx-check`)
set -euo pipefail
cd "$(dirname "$0")/.."

version=12.9.86
nvrtc_name=nvidia_cuda_nvrtc_cu12-$version-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl
nvrtc_url=https://files.pythonhosted.org/packages/b8/85/e4af82cc9202023862090bfca4ea827d533329e925c758f0cde964cb54b7/$nvrtc_name
nvrtc_sha256=210cf05005a447e29214e9ce50851e83fc5f4358df8b453155d5e1918094dcb4
nvcc_name=nvidia_cuda_nvcc_cu12-$version-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl
nvcc_url=https://files.pythonhosted.org/packages/25/48/b54a06168a2190572a312bfe4ce443687773eb61367ced31e064953dd2f7/$nvcc_name
nvcc_sha256=5d6a0d32fdc7ea39917c20065614ae93add6f577d840233237ff08e9a38f58f0

# NVRTC options. IEEE division and square root and no flush to zero (the
# defaults, spelled out), FMA contraction on (the default; never fast math);
# compute_80: the PTX runs on Ampere and every later GPU through the
# driver's JIT. The output is a function of kernels.cu, these options and the
# pinned NVRTC only.
NVRTC_OPTS=(
  --gpu-architecture=compute_80
  -default-device
  --std=c++17
  --prec-div=true
  --prec-sqrt=true
  --ftz=false
  --fmad=true
)
# Architectures `check` assembles for: A100, A10/RTX 30, L4/RTX 40, H100/H200,
# B200, RTX 50.
ARCHS=(sm_80 sm_86 sm_89 sm_90 sm_100 sm_120)

pkg=internal/accel/cudakernels
mode=${1:-}
case "$mode" in
  gen | check) ;;
  *) echo "usage: $0 gen|check" >&2; exit 2 ;;
esac

cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
dir=$cache/ptx-$version

# fetch NAME URL SHA256: download the wheel into the cache, as
# $cache/downloads/SHA256.whl, unless it is there and verifies.
fetch() {
  local whl=$cache/downloads/$3.whl
  if ! echo "$3  $whl" | sha256sum -c --status - 2>/dev/null; then
    echo "ptx.sh: downloading $1" >&2
    curl -fsSL --retry 3 -o "$whl.tmp" "$2"
    echo "$3  $whl.tmp" | sha256sum -c --quiet - >&2
    mv "$whl.tmp" "$whl"
  fi
}

if [ ! -f "$dir/.ok" ]; then
  rm -rf "$dir" && mkdir -p "$dir/lib" "$dir/bin" "$cache/downloads"
  fetch "$nvrtc_name" "$nvrtc_url" "$nvrtc_sha256"
  fetch "$nvcc_name" "$nvcc_url" "$nvcc_sha256"
  python3 - "$dir" "$cache/downloads/$nvrtc_sha256.whl" "$cache/downloads/$nvcc_sha256.whl" <<'EOF'
import os, shutil, sys, zipfile
dest, nvrtc, nvcc = sys.argv[1:]
want = [
    (nvrtc, "nvidia/cuda_nvrtc/lib/libnvrtc.so.12", "lib"),
    (nvrtc, "nvidia/cuda_nvrtc/lib/libnvrtc-builtins.so.12.9", "lib"),
    (nvcc, "nvidia/cuda_nvcc/bin/ptxas", "bin"),
]
for whl, member, sub in want:
    with zipfile.ZipFile(whl) as z, z.open(member) as src:
        path = os.path.join(dest, sub, os.path.basename(member))
        with open(path, "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(path, 0o755)
EOF
  touch "$dir/.ok"
fi

# generate OUTDIR: OUTDIR/kernels.ptx and OUTDIR/kernels.ptx.sha256 from
# $pkg/kernels.cu. libnvrtc.so.12 finds libnvrtc-builtins.so.12.9 next to
# itself (RUNPATH $ORIGIN).
generate() {
  python3 - "$dir/lib/libnvrtc.so.12" "$pkg/kernels.cu" "$1" "${NVRTC_OPTS[@]}" <<'EOF'
import ctypes, hashlib, os, sys
lib_path, src_path, out_dir, *opts = sys.argv[1:]
nvrtc = ctypes.CDLL(lib_path)
nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p

def check(rc, what):
    if rc != 0:
        sys.exit(f"ptx.sh: {what}: {nvrtc.nvrtcGetErrorString(rc).decode()}")

major, minor = ctypes.c_int(), ctypes.c_int()
check(nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
if (major.value, minor.value) != (12, 9):
    sys.exit(f"ptx.sh: NVRTC {major.value}.{minor.value}, want 12.9")

src = open(src_path, "rb").read()
prog = ctypes.c_void_p()
# The program's name is the file's base name, whatever the working directory.
check(nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src, b"kernels.cu", 0, None, None),
      "nvrtcCreateProgram")
args = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
rc = nvrtc.nvrtcCompileProgram(prog, len(opts), args)
size = ctypes.c_size_t()
check(nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "nvrtcGetProgramLogSize")
log = ctypes.create_string_buffer(size.value)
check(nvrtc.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
log = log.value.decode(errors="replace").strip()
if log:
    print(log, file=sys.stderr)
check(rc, "compiling " + src_path)
if log:  # warnings: kernels.cu compiles cleanly or not at all
    sys.exit(f"ptx.sh: NVRTC reported warnings for {src_path}")
check(nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
buf = ctypes.create_string_buffer(size.value)
check(nvrtc.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
ptx = buf.value  # without the terminating NUL

with open(os.path.join(out_dir, "kernels.ptx"), "wb") as f:
    f.write(ptx)
with open(os.path.join(out_dir, "kernels.ptx.sha256"), "w") as f:
    f.write(f"{hashlib.sha256(src).hexdigest()}  kernels.cu\n")
    f.write(f"{hashlib.sha256(ptx).hexdigest()}  kernels.ptx\n")
EOF
}

if [ "$mode" = gen ]; then
  generate "$pkg"
  echo "ptx.sh: wrote $pkg/kernels.ptx and $pkg/kernels.ptx.sha256" >&2
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
generate "$tmp"
for f in kernels.ptx kernels.ptx.sha256; do
  if ! cmp -s "$tmp/$f" "$pkg/$f"; then
    echo "ptx.sh: $pkg/$f is out of date with $pkg/kernels.cu (or was edited by hand): run \`make ptx\`" >&2
    diff -u "$pkg/$f" "$tmp/$f" 2>&1 | head -40 >&2 || true
    exit 1
  fi
done

# Assemble for each architecture; -Werror with -warn-spills and
# -warn-lmem-usage turns a spill or any local memory into an error.
for arch in "${ARCHS[@]}"; do
  if ! "$dir/bin/ptxas" -arch="$arch" -v -Werror -warn-spills -warn-lmem-usage \
    -o "$tmp/kernels.$arch.cubin" "$pkg/kernels.ptx" >"$tmp/ptxas.$arch.log" 2>&1; then
    cat "$tmp/ptxas.$arch.log" >&2
    echo "ptx.sh: ptxas -arch=$arch failed on $pkg/kernels.ptx" >&2
    exit 1
  fi
done

# The resources of each kernel per architecture, from the ptxas -v logs; a
# spill fails the check even if ptxas did not make it an error.
python3 - "$tmp" "${ARCHS[@]}" <<'EOF'
import re, sys
tmp, *archs = sys.argv[1:]
use = {}  # kernel -> arch -> (regs, smem, stack, spill stores, spill loads)
bad = []
for arch in archs:
    kernel = None
    stack = spill_st = spill_ld = 0
    for line in open(f"{tmp}/ptxas.{arch}.log"):
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            kernel = m.group(1)
        elif m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line):
            stack, spill_st, spill_ld = map(int, m.groups())
        elif (m := re.search(r"Used (\d+) registers", line)) and kernel:
            smem = re.search(r"(\d+) bytes smem", line)
            use.setdefault(kernel, {})[arch] = (int(m.group(1)), int(smem.group(1)) if smem else 0,
                                               stack, spill_st, spill_ld)
            if stack or spill_st or spill_ld:
                bad.append(f"{kernel} on {arch}: {stack} bytes stack, {spill_st} bytes spill stores, {spill_ld} bytes spill loads")
            kernel = None
print("ptx.sh: ptxas 12.9 -v, registers/static shared memory bytes per kernel (no stack, no spills):")
print(f"  {'kernel':<22}" + "".join(f"{a:>14}" for a in archs))
for kernel in sorted(use):
    print(f"  {kernel:<22}" + "".join(f"{'%d/%d' % use[kernel][a][:2] if a in use[kernel] else '-':>14}" for a in archs))
missing = [a for a in archs if not any(a in u for u in use.values())]
if bad or missing or not use:
    for b in bad:
        print("ptx.sh: spill or stack:", b, file=sys.stderr)
    for a in missing:
        print(f"ptx.sh: no kernels in the ptxas log for {a}", file=sys.stderr)
    sys.exit(1)
EOF
echo "ptx.sh: $pkg/kernels.ptx is up to date and assembles for ${ARCHS[*]}" >&2
