#!/usr/bin/env bash
# check.sh: the GPU device check of embedd, run on the device machine (no
# network, no Go) from the repository root with what `make gpu-carry`
# prepared. It runs in two calls, because the carry is split in two parts
# that each fit the 64 MiB upload (see prepare.sh); files under /tmp stay
# between the calls while the machine is warm:
#
#   call 1 (carry .gpu-carry/a): unpack the binaries and the model; probe the
#     machine (nvidia-smi, glibc, CUDA libraries in the Python venv); derive
#     and verify the two device models with `embedd models pull`; dump the
#     benchmark texts; run the sentence-transformers baseline (PyTorch fp32
#     and fp16, parity vectors and throughput per batch size).
#   call 2 (carry .gpu-carry/b): unpack the GPU build of ONNX Runtime; then,
#     with --provider cuda: parity vectors; in-process throughput and
#     p50/p99 at batch 1, 32 and 256 for ~16, ~64 and ~256-token texts;
#     IoBinding on and off; a small memory arena that forces out-of-memory
#     splits; the gRPC server under the Go load generator at concurrency 1
#     and 256; the server's metrics (no CPU fallback). Last, report.py
#     writes $OUT/gpu-report.json and gpu-report.md.
#
# Usage on the device: `bash bench/gpu/check.sh 1` with .gpu-carry/a
# carried, then at once `bash bench/gpu/check.sh 2` with .gpu-carry/b.
# CHECK_MODE=latency makes call 2 measure only concurrency-1 latency by
# server variant; CHECK_SKIP_TORCH=1 skips the PyTorch baseline in call 1.
# Every step has its own time limit and the whole call a hard one
# (CHECK_LIMIT_S, default 360 s); a failed step is recorded in the report
# and the next one runs. Dry run of both calls on a machine without a GPU:
#   make gpu-check-dry
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
W=${CHECK_WORK:-/tmp/embedd-gpu}
OUT=${OUT:-$W/out}
PROVIDER=${CHECK_PROVIDER:-cuda}
limit=${CHECK_LIMIT_S:-360}
deadline=$(($(date +%s) + limit))
mkdir -p "$W" "$OUT"
exec > >(tee -a "$OUT/check.log") 2>&1

log() { echo "[$(date -u +%T)] $*"; }
left() { echo $((deadline - $(date +%s))); }
# step NAME SECONDS CMD...: run CMD with a time limit, its output in
# $OUT/steps/NAME.log, and record the result in $W/steps.jsonl.
mkdir -p "$OUT/steps"
step() {
  local name=$1 max=$2 t rc start
  shift 2
  t=$(left)
  ((t > max)) && t=$max
  if ((t < 5)); then
    log "skip $name: out of time"
    echo "{\"step\":\"$name\",\"rc\":-1,\"seconds\":0}" >>"$W/steps.jsonl"
    return 1
  fi
  log "run $name (limit ${t}s)"
  start=$(date +%s.%N)
  timeout -k 5 "$t" "$@" >"$OUT/steps/$name.log" 2>&1
  rc=$?
  local secs
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  echo "{\"step\":\"$name\",\"rc\":$rc,\"seconds\":$secs}" >>"$W/steps.jsonl"
  if ((rc != 0)); then
    log "FAILED $name (rc $rc); last lines:"
    tail -n 15 "$OUT/steps/$name.log"
  else
    log "ok $name (${secs}s)"
  fi
  return $rc
}

# Which call: the argument (1 or 2), else whichever carried part is here.
# The device keeps ignored files between calls while it is warm, so a
# .gpu-carry/a left by call 1 must not make call 2 start over.
call=${1:-}
if [ -z "$call" ]; then
  if [ "$PROVIDER" = cpu ]; then call=both
  elif [ -d .gpu-carry/b ]; then call=2
  else call=1; fi
fi

# ---------------------------------------------------------------- call 1
if [ -d .gpu-carry/a ] && { [ "$call" = 1 ] || [ "$call" = both ]; }; then
  log "call 1: unpack binaries and model into $W"
  rm -rf "$W/bin" "$W/st" "$W/models" "$W/cache" "$W/vec" "$W/texts" "$W/steps.jsonl"
  mkdir -p "$W/bin" "$W/st" "$W/vec" "$W/texts" "$W/cache/models/gpu-fp32" "$W/cache/models/gpu-fp16"
  xz -dc .gpu-carry/a/embedd.xz >"$W/bin/embedd" && xz -dc .gpu-carry/a/load.xz >"$W/bin/load"
  chmod +x "$W/bin/embedd" "$W/bin/load"
  tar -C "$W/st" -xf .gpu-carry/a/st-files.tar
  xz -dc .gpu-carry/a/model.safetensors.xz >"$W/st/model.safetensors"
  cp -r .gpu-carry/a/models "$W/models"
  cp .gpu-carry/a/parity.jsonl .gpu-carry/a/cpu-*.f32 "$W/"
  for m in gpu-fp32 gpu-fp16; do
    cp "$W/st/tokenizer.json" "$W/st/config.json" "$W/st/model.safetensors" "$W/cache/models/$m/"
  done

  log "probe"
  {
    echo "## nvidia-smi"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm --format=csv 2>&1
    echo "## glibc"; ldd --version 2>&1 | head -1
    echo "## kernel"; uname -r
    echo "## cpu"; nproc; grep -m1 'model name' /proc/cpuinfo
    echo "## python"
    python3 -c 'import sys,torch,sentence_transformers as s,transformers as t; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "st", s.__version__, "transformers", t.__version__)' 2>&1
  } >"$OUT/probe.txt"
  # The CUDA 13 libraries ONNX Runtime's provider needs come with torch's
  # pip packages (nvidia-*-cu13): every nvidia/*/lib folder of site-packages.
  libdirs=$(python3 - <<'PY'
import glob, os, site
dirs = []
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    dirs += sorted(glob.glob(os.path.join(sp, "nvidia", "*", "lib")))
    dirs += sorted(glob.glob(os.path.join(sp, "nvidia", "cu13", "lib")))
print(":".join(dict.fromkeys(d for d in dirs if os.path.isdir(d))))
PY
  )
  echo "export LD_LIBRARY_PATH=$libdirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" >"$W/env.sh"
  {
    echo "## CUDA library folders (LD_LIBRARY_PATH)"; echo "$libdirs" | tr : '\n'
    echo "## libraries found"
    for d in $(echo "$libdirs" | tr : ' '); do ls "$d"; done | grep -E '^lib(cublas|cublasLt|cudart|curand|cudnn)\.so' | sort -u
  } >>"$OUT/probe.txt"
  cat "$OUT/probe.txt"
  cp "$OUT/probe.txt" "$W/probe.txt"

  step "models-pull" 60 "$W/bin/embedd" models pull --cache-dir "$W/cache" --models-dir "$W/models" gpu-fp32 gpu-fp16
  step "dump-texts" 20 bash -c "for s in short16 medium64 long256; do '$W/bin/load' -texts \$s -n 4096 -dump-texts '$W/texts/'\$s.jsonl || exit 1; done"
  [ -n "${CHECK_SKIP_TORCH:-}" ] || step "torch-baseline" 200 python3 bench/gpu/st_baseline.py --device "${CHECK_TORCH_DEVICE:-cuda}" --model-dir "$W/st" \
    --texts "$W/texts/short16.jsonl" "$W/texts/medium64.jsonl" "$W/texts/long256.jsonl" \
    --parity "$W/parity.jsonl" --vectors "$W/vec" --out "$W/torch.json" \
    --batches "${CHECK_ST_BATCHES:-1,32,128,512}" --seconds "${CHECK_ST_SECONDS:-1.5}"
  cp "$W/torch.json" "$OUT/" 2>/dev/null
  log "call 1 done"
fi

# ---------------------------------------------------------------- call 2
if [ "$call" = 2 ] || [ "$call" = both ]; then
  if [ ! -x "$W/bin/embedd" ]; then
    log "call 2 needs call 1's files in $W (the machine went cold?); run call 1 again"
    exit 3
  fi
  # shellcheck disable=SC1091
  . "$W/env.sh"
  ortflag=()
  if [ -d .gpu-carry/b ]; then
    log "call 2: unpack the GPU build of ONNX Runtime"
    mkdir -p "$W/ortlib"
    xz -dc .gpu-carry/b/libonnxruntime.so.1.xz >"$W/ortlib/libonnxruntime.so.1"
    xz -dc .gpu-carry/b/libonnxruntime_providers_cuda.so.xz >"$W/ortlib/libonnxruntime_providers_cuda.so"
    cp .gpu-carry/b/libonnxruntime_providers_shared.so "$W/ortlib/"
    ortflag=(--ort-lib "$W/ortlib/libonnxruntime.so.1")
  fi
  E=("$W/bin/embedd")
  common=(--cache-dir "$W/cache" --models-dir "$W/models" "${ortflag[@]}" --provider "$PROVIDER")
  rm -f "$W"/inproc-*.json "$W"/vec/cuda-*.json
  step "version" 20 "${E[@]}" version "${common[@]}"
  if [ "${CHECK_MODE:-full}" = latency ]; then
    # Concurrency-1 latency of the server, short texts, fp16, by server
    # variant; and the engine alone at batch 1.
    step "inproc-fp16-batch1" 20 "${E[@]}" bench "${common[@]}" --model gpu-fp16 --batch 1 --duration 4s --warmup 1s --out "$W/inproc-lat.json" "$W/texts/short16.jsonl"
    port=50070
    for v in "default" "threads16:--threads 16" "workers1:--workers 1" "iobinding:--cuda-io-binding"; do
      name=${v%%:*} flags=${v#*:}
      [ "$flags" = "$v" ] && flags=
      port=$((port + 1))
      # shellcheck disable=SC2086
      "${E[@]}" serve "${common[@]}" $flags --model gpu-fp16 --addr 127.0.0.1:$port --metrics-addr 127.0.0.1:$((port + 100)) >"$OUT/steps/server-$name.log" 2>&1 &
      spid=$!
      for _ in $(seq 1 120); do "${E[@]}" health --addr 127.0.0.1:$port >/dev/null 2>&1 && break; sleep 0.25; done
      step "lat-$name" 25 "$W/bin/load" -addr 127.0.0.1:$port -metrics "" -model gpu-fp16 -texts short16 -n 4096 -truncate \
        -concurrency 1 -duration 6s -warmup 2s -label "lat-$name" -out "$W/load/lat-$name"
      kill -TERM "$spid" 2>/dev/null
      wait "$spid"
    done
    python3 - "$W" <<'PY' | tee "$OUT/latency.md"
import glob, json, os, sys
W = sys.argv[1]
print("| variant | sentences/s | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|")
for p in sorted(glob.glob(os.path.join(W, "load", "lat-*", "results.json"))):
    r = json.load(open(p))
    for run in r["runs"]:
        l = run["latency_ms"]
        print(f"| {r['label']} | {run['sentences_per_s']:.0f} | {l['p50']:.3f} | {l['p95']:.3f} | {l['p99']:.3f} | {l['max']:.3f} |")
b = json.load(open(os.path.join(W, "inproc-lat.json")))
for run in b["runs"]:
    print(f"| in process, batch 1 ({b['backend']}) | {run['sentences_per_s']:.0f} | {run['p50_ms']:.3f} | | {run['p99_ms']:.3f} | |")
PY
    exit 0
  fi
  for prec in fp16 fp32; do
    step "parity-$prec" 60 bash -c "'$W/bin/embedd' embed ${common[*]} --model gpu-$prec --jsonl - <'$W/parity.jsonl' >'$W/vec/cuda-$prec.json'"
  done
  texts=("$W/texts/short16.jsonl" "$W/texts/medium64.jsonl" "$W/texts/long256.jsonl")
  step "inproc-fp16" 75 "${E[@]}" bench "${common[@]}" --model gpu-fp16 --batch 1,32,256 --duration 3s --warmup 1s --out "$W/inproc-fp16.json" "${texts[@]}"
  step "inproc-fp32" 50 "${E[@]}" bench "${common[@]}" --model gpu-fp32 --batch 1,32,256 --duration 2s --warmup 1s --out "$W/inproc-fp32.json" "${texts[@]}"
  step "inproc-fp16-iobinding" 25 "${E[@]}" bench "${common[@]}" --cuda-io-binding --model gpu-fp16 --batch 1,256 --duration 2s --warmup 1s --out "$W/inproc-fp16-iobinding.json" "$W/texts/short16.jsonl"
  step "inproc-fp16-workers1" 20 "${E[@]}" bench "${common[@]}" --workers 1 --model gpu-fp16 --batch 256 --duration 2s --warmup 1s --out "$W/inproc-fp16-workers1.json" "$W/texts/short16.jsonl"
  # A 160 MiB arena holds the fp16 weights (~45 MB) but not a batch of 256
  # texts of 256 tokens: the engine must split it and lose no text.
  step "oom-split" 30 "${E[@]}" bench "${common[@]}" --cuda-mem-limit 160 --model gpu-fp16 --batch 256 --duration 2s --warmup 0s --out "$W/inproc-oom.json" "$W/texts/long256.jsonl"

  log "server"
  "${E[@]}" serve "${common[@]}" --model gpu-fp16 --preload gpu-fp32 --addr 127.0.0.1:50061 --metrics-addr 127.0.0.1:9161 \
    >"$OUT/steps/server.log" 2>&1 &
  spid=$!
  for _ in $(seq 1 120); do "${E[@]}" health --addr 127.0.0.1:50061 >/dev/null 2>&1 && break; sleep 0.25; done
  L=("$W/bin/load" -addr 127.0.0.1:50061 -metrics http://127.0.0.1:9161/metrics -n 4096 -conns 8 -truncate -warmup 2s)
  rm -rf "$W/load"
  step "load-fp16-short16" 40 "${L[@]}" -model gpu-fp16 -texts short16 -concurrency 1,256 -duration 5s -label fp16-short16 -out "$W/load/fp16-short16"
  step "load-fp16-medium64" 20 "${L[@]}" -model gpu-fp16 -texts medium64 -concurrency 256 -duration 4s -label fp16-medium64 -out "$W/load/fp16-medium64"
  step "load-fp16-long256" 20 "${L[@]}" -model gpu-fp16 -texts long256 -concurrency 256 -duration 4s -label fp16-long256 -out "$W/load/fp16-long256"
  step "load-fp32-short16" 30 "${L[@]}" -model gpu-fp32 -texts short16 -concurrency 1,256 -duration 4s -label fp32-short16 -out "$W/load/fp32-short16"
  python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("http://127.0.0.1:9161/metrics", timeout=5).read().decode())' >"$W/metrics.txt" 2>/dev/null
  kill -TERM "$spid" 2>/dev/null
  wait "$spid"
  echo "server exit status $?" >>"$OUT/steps/server.log"
  grep -E '^embedd_(model_backend|cpu_retries_total|oom_splits_total|batch_errors_total)' "$W/metrics.txt" >"$OUT/metrics-device.txt" 2>/dev/null

  cp "$W/probe.txt" "$W/torch.json" "$OUT/" 2>/dev/null
  cp "$W/steps.jsonl" "$OUT/" 2>/dev/null
  step "report" 30 python3 bench/gpu/report.py --work "$W" --out "$OUT" --repo "$repo"
  cat "$OUT/gpu-report.md" 2>/dev/null
  log "call 2 done"
fi
