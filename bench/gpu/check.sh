#!/usr/bin/env bash
# check.sh: the GPU device check of embedd, run on the device machine (no
# network, no Go) from the repository root with what `make gpu-carry`
# prepared. It runs in three calls, because the carry is split in three
# parts that each fit the 64 MiB upload (see prepare.sh); files under /tmp
# stay between the calls while the machine is warm:
#
#   call 1 (carry .gpu-carry/a): unpack embedd (built with the cuda tag: the
#     native CUDA encoder and every ONNX Runtime path), the model and the
#     benchmark texts (short16, medium64, long256, mixed); probe the machine
#     (nvidia-smi, glibc, CUDA libraries in the Python venv,
#     compute-sanitizer, `embedd version`); derive and verify the two device
#     models with `embedd models pull`; run the sentence-transformers
#     baseline (PyTorch fp32 and fp16, parity vectors and throughput per
#     batch size).
#   call 2 (carry .gpu-carry/b): the native CUDA encoder (--provider
#     cuda-native, no ONNX Runtime loaded, so nothing falls back): rebuild
#     the catalog's fp32 all-minilm-l6-v2 weights (fp32_delta.py, sha256
#     checked) for the encoder's test binary, and run it (kernel-by-kernel
#     tests, parity with the CPU twin and the reference vectors);
#     compute-sanitizer memcheck (fp16, fp32) and racecheck (fp16) on a small
#     `embedd embed`; parity vectors of gpu-fp32 and gpu-fp16; in-process
#     throughput on the four text sets; the gRPC server under the load
#     generator at concurrency 1 and 256 on mixed and short16 texts, and its
#     metrics (native backend, GPU memory gauges). Carry b also brings the
#     load generator and ONNX Runtime's core library, for call 3.
#   call 3 (carry .gpu-carry/c): ONNX Runtime's CUDA provider; then, with
#     --provider cuda: parity vectors; in-process throughput and p50/p99 at
#     batch 1, 32 and 256 on the four text sets; a small memory arena that
#     forces out-of-memory splits; the gRPC server under the load generator
#     at concurrency 1 and 256 (short16, mixed; medium64 and long256 at
#     256), beside the native runs of call 2; the server's metrics (no CPU
#     fallback). CHECK_ORT_EXTRAS=1 adds what the previous session measured
#     already (IoBinding, one worker, fp32 under load).
#   Each of calls 2 and 3 ends by writing $OUT/gpu-report.json and
#   gpu-report.md with report.py from all that is in $W, so the report after
#   call 3 covers the three calls, and the one after call 2 the native path
#   if call 3 never runs.
#
# Expected device time on an H200 (wall time of the command; add ~20 s per
# call for the transfers): call 1 ~1.5 min (unpack and probe ~25 s, the
# PyTorch baseline ~60 s); call 2 ~4.5 min (the test binary ~30-60 s, the
# three sanitizer runs ~20-60 s each, parity ~8 s, bench ~55 s, server
# ~35 s); call 3 ~2 min (the previous session's run, with mixed texts and
# without the extras): ~8 min for the three. Each call has a hard limit
# (CHECK_LIMIT_S, default 150 s for calls 1 and 3, 300 s for call 2: 10
# minutes at most) and each step its own; in call 2 the sanitizer's fp32
# and racecheck runs come last, so they are what a slow call loses.
#
# Usage on the device, in this order (each call needs the files of the
# ones before it): `bash bench/gpu/check.sh 1` with .gpu-carry/a carried,
# then at once `bash bench/gpu/check.sh 2` with .gpu-carry/b and
# `bash bench/gpu/check.sh 3` with .gpu-carry/c.
# CHECK_MODE=latency makes call 3 measure only concurrency-1 latency by
# server variant (ONNX Runtime); CHECK_SKIP_TORCH=1 skips the PyTorch
# baseline in call 1; CHECK_NATIVE=0 skips the native steps of call 2.
# Every step has its own time limit and the whole call a hard one; a failed
# step is recorded in the report and the next one runs. Dry run of the three
# calls on a machine without a GPU (CHECK_PROVIDER=cpu: ONNX Runtime on the
# CPU, the untagged binary CHECK_EMBEDD, the native steps recorded as
# skipped because they need a GPU):
#   make gpu-check-dry
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
W=${CHECK_WORK:-/tmp/embedd-gpu}
OUT=${OUT:-$W/out}
PROVIDER=${CHECK_PROVIDER:-cuda}
mkdir -p "$W" "$OUT"
exec > >(tee -a "$OUT/check.log") 2>&1

log() { echo "[$(date -u +%T)] $*"; }
left() { echo $((deadline - $(date +%s))); }
# step NAME SECONDS CMD...: run CMD with a time limit, its output in
# $W/steps/NAME.log (kept between calls while the machine is warm; the
# report packs them into $OUT/logs.tgz), and record the result in
# $W/steps.jsonl.
mkdir -p "$W/steps"
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
  timeout -k 5 "$t" "$@" >"$W/steps/$name.log" 2>&1
  rc=$?
  local secs
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  echo "{\"step\":\"$name\",\"rc\":$rc,\"seconds\":$secs}" >>"$W/steps.jsonl"
  if ((rc != 0)); then
    log "FAILED $name (rc $rc); last lines:"
    tail -n 15 "$W/steps/$name.log"
  else
    log "ok $name (${secs}s)"
  fi
  return $rc
}

# ready ADDR PID: wait up to 30 s for the server PID to answer health
# checks at ADDR; stop waiting if it exits (a model that failed to load).
ready() {
  for _ in $(seq 1 120); do
    "$W/bin/embedd" health --addr "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { log "server $1 exited before it was ready"; return 1; }
    sleep 0.25
  done
  return 1
}

# skip NAME REASON: record a step that did not run, and why.
skip() {
  log "skip $1: $2"
  printf '{"step":"%s","rc":-2,"seconds":0,"skipped":"%s"}\n' "$1" "$2" >>"$W/steps.jsonl"
}

# report: write the report from everything in $W (calls 2 and 3 end with
# it), with 30 s of its own beyond the call's limit. $OUT keeps four files
# (the device returns at most 8): gpu-report.md, gpu-report.json, check.log
# and logs.tgz (step logs, probe, PyTorch results, metrics, steps.jsonl).
report() {
  local saved=$deadline
  ((deadline < $(date +%s) + 30)) && deadline=$(($(date +%s) + 30))
  step "report" 30 python3 bench/gpu/report.py --work "$W" --out "$OUT" --repo "$repo"
  deadline=$saved
  tar -C "$W" -czf "$OUT/logs.tgz" steps steps.jsonl $(cd "$W" && ls probe.txt torch.json metrics*.txt 2>/dev/null)
  rm -rf "$OUT/steps" "$OUT/probe.txt" "$OUT/torch.json" "$OUT/steps.jsonl" "$OUT"/metrics*.txt
  cat "$OUT/gpu-report.md" 2>/dev/null
}

# The native steps need the GPU and the cuda-tagged binary.
NATIVE=${CHECK_NATIVE:-1}
native_off=""
if [ "$PROVIDER" = cpu ]; then
  native_off="needs a GPU (dry run: CHECK_PROVIDER=cpu)"
elif [ "$NATIVE" = 0 ]; then
  native_off="CHECK_NATIVE=0"
fi

# Which call: the argument (1, 2 or 3), else whichever carried part is
# here. The device keeps ignored files between calls while it is warm, so
# a .gpu-carry/a left by call 1 must not make call 2 start over.
call=${1:-}
if [ -z "$call" ]; then
  if [ "$PROVIDER" = cpu ]; then call=all
  elif [ -d .gpu-carry/c ]; then call=3
  elif [ -d .gpu-carry/b ]; then call=2
  else call=1; fi
fi
[ "$call" = both ] && call=all
# The hard limit of this call: CHECK_LIMIT_S, else 150 s for calls 1 and 3
# and 300 s for call 2 (at most 10 minutes for the three, with the
# transfers under the session's 15 minutes of device time).
case $call in
  2) limit=${CHECK_LIMIT_S:-300} ;;
  all) limit=${CHECK_LIMIT_S:-900} ;;
  *) limit=${CHECK_LIMIT_S:-150} ;;
esac
deadline=$(($(date +%s) + limit))

# ---------------------------------------------------------------- call 1
if [ -d .gpu-carry/a ] && { [ "$call" = 1 ] || [ "$call" = all ]; }; then
  log "call 1: unpack binaries and model into $W"
  rm -rf "$W/bin" "$W/st" "$W/models" "$W/cache" "$W/vec" "$W/texts" "$W/steps" "$W/steps.jsonl" "$W/load" "$W/ortlib" "$W"/inproc-*.json "$W"/metrics*.txt "$W/sizes.json"
  mkdir -p "$W/bin" "$W/st" "$W/vec" "$W/texts" "$W/steps" "$W/cache/models/gpu-fp32" "$W/cache/models/gpu-fp16"
  if [ -n "${CHECK_EMBEDD:-}" ]; then
    cp "$CHECK_EMBEDD" "$W/bin/embedd" # dry run: the untagged build
  else
    xz -dc .gpu-carry/a/embedd.xz >"$W/bin/embedd"
  fi
  chmod +x "$W/bin/embedd"
  # The benchmark texts, as `load -dump-texts` wrote them in prepare.sh
  # (the load generator, in carry b, makes the same ones from the same seed).
  xz -dc .gpu-carry/a/texts.tar.xz | tar -C "$W/texts" -xf -
  tar -C "$W/st" -xf .gpu-carry/a/st-files.tar
  xz -dc .gpu-carry/a/model.safetensors.xz >"$W/st/model.safetensors"
  cp -r .gpu-carry/a/models "$W/models"
  cp .gpu-carry/a/parity.jsonl .gpu-carry/a/cpu-*.f32 .gpu-carry/a/sizes.json "$W/"
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
    echo "## compute-sanitizer"
    san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
    echo "${san:-not found}"
    [ -n "$san" ] && "$san" --version 2>&1 | tail -1
    echo "## embedd version"
    "$W/bin/embedd" version --cache-dir "$W/cache" 2>&1
  } >>"$OUT/probe.txt"
  cat "$OUT/probe.txt"
  cp "$OUT/probe.txt" "$W/probe.txt"

  step "models-pull" 60 "$W/bin/embedd" models pull --cache-dir "$W/cache" --models-dir "$W/models" gpu-fp32 gpu-fp16
  [ -n "${CHECK_SKIP_TORCH:-}" ] || step "torch-baseline" 200 python3 bench/gpu/st_baseline.py --device "${CHECK_TORCH_DEVICE:-cuda}" --model-dir "$W/st" \
    --texts "$W/texts/short16.jsonl" "$W/texts/medium64.jsonl" "$W/texts/long256.jsonl" "$W/texts/mixed.jsonl" \
    --parity "$W/parity.jsonl" --vectors "$W/vec" --out "$W/torch.json" \
    --batches "${CHECK_ST_BATCHES:-1,32,128,512}" --seconds "${CHECK_ST_SECONDS:-1.0}"
  cp "$W/torch.json" "$OUT/" 2>/dev/null
  log "call 1 done"
fi

# ---------------------------------------------------------------- call 2
if [ "$call" = 2 ] || [ "$call" = all ]; then
  if [ ! -x "$W/bin/embedd" ]; then
    log "call 2 needs call 1's files in $W (the machine went cold?); run call 1 again"
    exit 3
  fi
  # shellcheck disable=SC1091
  . "$W/env.sh"
  E=("$W/bin/embedd")
  if [ -d .gpu-carry/b ]; then
    log "call 2: unpack the load generator, the native encoder's test binary and ONNX Runtime's core library (for call 3); rebuild the catalog's fp32 weights"
    xz -dc .gpu-carry/b/load.xz >"$W/bin/load"
    xz -dc .gpu-carry/b/cuda.test.xz >"$W/bin/cuda.test"
    chmod +x "$W/bin/load" "$W/bin/cuda.test"
    mkdir -p "$W/ortlib"
    xz -dc .gpu-carry/b/libonnxruntime.so.1.xz >"$W/ortlib/libonnxruntime.so.1"
    # The test binary's whole-model tests read the catalog's all-minilm-l6-v2
    # (config.json, model.safetensors, tokenizer.json) from
    # $EMBEDD_CACHE_DIR/models/all-minilm-l6-v2 and compare with the
    # reference vectors in internal/engine/testdata/parity, made from the
    # exact fp32 weights: rebuild them (fp32_delta.py checks the sha256).
    mkdir -p "$W/cache/models/all-minilm-l6-v2"
    cp "$W/st/tokenizer.json" "$W/st/config.json" "$W/cache/models/all-minilm-l6-v2/"
    xz -dc .gpu-carry/b/fp32-delta.npz.xz >"$W/fp32-delta.npz"
    step "fp32-weights" 40 python3 bench/gpu/fp32_delta.py join --fp16 "$W/st/model.safetensors" --delta "$W/fp32-delta.npz" \
      --out "$W/cache/models/all-minilm-l6-v2/model.safetensors"
    rm -f "$W/fp32-delta.npz"
  fi
  # No --ort-lib and no ONNX Runtime in $W/cache: the native encoder runs
  # alone, and a model it cannot run fails to load instead of falling back.
  N=(--cache-dir "$W/cache" --models-dir "$W/models" --provider cuda-native)
  nsteps=(native-version native-cuda-test native-parity-fp16 native-parity-fp32 native-memcheck-fp16
    native-inproc-fp16 load-native-fp16-mixed load-native-fp16-short16 native-inproc-fp32
    native-memcheck-fp32 native-ncu-long256 native-racecheck-fp16)
  rm -f "$W"/inproc-native-*.json "$W"/vec/native-*.json "$W/metrics-native.txt"
  rm -rf "$W"/load/native-*
  if [ -n "$native_off" ]; then
    for n in "${nsteps[@]}"; do skip "$n" "$native_off"; done
  else
    step "native-version" 20 "${E[@]}" version "${N[@]}"
    # Kernel-by-kernel tests and parity with the CPU twin and the reference
    # vectors, from the package's folder (its testdata paths are relative),
    # on the catalog model rebuilt above; assets must be there (a missing
    # one fails).
    step "native-cuda-test" 150 env -C internal/accel/cuda EMBEDD_CACHE_DIR="$W/cache" EMBEDD_REQUIRE_ASSETS=1 \
      "$W/bin/cuda.test" -test.v -test.count=1 -test.timeout=140s
    for prec in fp16 fp32; do
      step "native-parity-$prec" 60 bash -c "'$W/bin/embedd' embed ${N[*]} --model gpu-$prec --jsonl - <'$W/parity.jsonl' >'$W/vec/native-$prec.json'"
    done
    # compute-sanitizer on a few texts (one truncated at 256 tokens) through
    # the whole path: load, self-check against the CPU twin, one packed
    # batch. An error fails the step (exit 86); report.py reads the
    # summary. memcheck fp16 first; fp32 and racecheck after the
    # measurements, in the time left.
    san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
    long=$(printf 'the quick brown fox jumps over the lazy dog %.0s' $(seq 1 40))
    few=("hello" "a short sentence about the weather in the mountains" "$long" "one more text, with punctuation: commas, colons; and a question?")
    # racecheck prints every hazard (--print-limit 0) and does not fail
    # the step: cuBLAS's Hopper (nvjet) kernels synchronize with mbarriers
    # and TMA that racecheck does not model and report thousands of false
    # hazards (its kernel filter, the way to leave them out, crashes the
    # tool on those kernels); report.py attributes every hazard to its
    # kernel and requires none in embedd's.
    sanitize() { # NAME TOOL PRECISION LIMIT
      if [ -z "$san" ]; then skip "$1" "compute-sanitizer not found"; return; fi
      local flags=(--error-exitcode 86 --print-limit 20)
      [ "$2" = racecheck ] && flags=(--racecheck-report hazard --print-limit 0)
      step "$1" "$4" env GODEBUG=asyncpreemptoff=1 "$san" --tool "$2" "${flags[@]}" \
        "${E[@]}" embed "${N[@]}" --model "gpu-$3" "${few[@]}"
    }
    sanitize native-memcheck-fp16 memcheck fp16 75
    texts=("$W/texts/short16.jsonl" "$W/texts/medium64.jsonl" "$W/texts/long256.jsonl" "$W/texts/mixed.jsonl")
    step "native-inproc-fp16" 75 "${E[@]}" bench "${N[@]}" --model gpu-fp16 --batch 1,32,256 --duration 2s --warmup 0.5s --out "$W/inproc-native-fp16.json" "${texts[@]}"

    log "native server"
    # Servers run with the embedding cache off (--embed-cache-bytes 0): the
    # load generator cycles through a fixed set of texts.
    "${E[@]}" serve "${N[@]}" --embed-cache-bytes 0 --model gpu-fp16 --preload gpu-fp32 --addr 127.0.0.1:50062 --metrics-addr 127.0.0.1:9162 \
      >"$W/steps/server-native.log" 2>&1 &
    spid=$!
    ready 127.0.0.1:50062 "$spid"
    L=("$W/bin/load" -addr 127.0.0.1:50062 -metrics http://127.0.0.1:9162/metrics -n 4096 -conns 8 -truncate -warmup 2s)
    step "load-native-fp16-mixed" 40 "${L[@]}" -model gpu-fp16 -texts mixed -concurrency 1,256 -duration 5s -label native-fp16-mixed -out "$W/load/native-fp16-mixed"
    step "load-native-fp16-short16" 40 "${L[@]}" -model gpu-fp16 -texts short16 -concurrency 1,256 -duration 5s -label native-fp16-short16 -out "$W/load/native-fp16-short16"
    python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("http://127.0.0.1:9162/metrics", timeout=5).read().decode())' >"$W/metrics-native.txt" 2>/dev/null
    kill -TERM "$spid" 2>/dev/null
    wait "$spid"
    echo "server exit status $?" >>"$W/steps/server-native.log"

    step "native-inproc-fp32" 40 "${E[@]}" bench "${N[@]}" --model gpu-fp32 --batch 1,256 --duration 1.5s --warmup 0.5s --out "$W/inproc-native-fp32.json" "${texts[@]}"
    sanitize native-memcheck-fp32 memcheck fp32 60
    # GPU time per kernel of the first batches of long texts (ncu, one
    # metric; kernels.py-style summary in the report).
    ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
    if [ -n "$ncu" ]; then
      step "native-ncu-long256" 40 "$ncu" --launch-skip 150 --launch-count 120 --metrics gpu__time_duration.sum --csv \
        "${E[@]}" bench "${N[@]}" --model gpu-fp16 --batch 256 --duration 0.3s --warmup 0s --out "$W/ncu-bench.json" "$W/texts/long256.jsonl"
    else
      skip native-ncu-long256 "ncu not found"
    fi
    sanitize native-racecheck-fp16 racecheck fp16 60
  fi
  report
  log "call 2 done"
fi

# ---------------------------------------------------------------- call 3
if [ "$call" = 3 ] || [ "$call" = all ]; then
  if [ ! -x "$W/bin/embedd" ] || [ ! -x "$W/bin/load" ]; then
    log "call 3 needs the files of calls 1 and 2 in $W (the machine went cold?); run them again"
    exit 3
  fi
  # shellcheck disable=SC1091
  . "$W/env.sh"
  if [ -d .gpu-carry/c ]; then
    log "call 3: unpack the CUDA provider of ONNX Runtime's GPU build (its core library came in call 2)"
    mkdir -p "$W/ortlib"
    xz -dc .gpu-carry/c/libonnxruntime_providers_cuda.so.xz >"$W/ortlib/libonnxruntime_providers_cuda.so"
    cp .gpu-carry/c/libonnxruntime_providers_shared.so "$W/ortlib/"
  fi
  ortflag=()
  [ -f "$W/ortlib/libonnxruntime.so.1" ] && ortflag=(--ort-lib "$W/ortlib/libonnxruntime.so.1")
  E=("$W/bin/embedd")
  common=(--cache-dir "$W/cache" --models-dir "$W/models" "${ortflag[@]}" --provider "$PROVIDER")
  rm -f "$W"/inproc-fp*.json "$W"/inproc-oom.json "$W"/inproc-lat.json "$W"/vec/cuda-*.json
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
      "${E[@]}" serve "${common[@]}" $flags --embed-cache-bytes 0 --model gpu-fp16 --addr 127.0.0.1:$port --metrics-addr 127.0.0.1:$((port + 100)) >"$W/steps/server-$name.log" 2>&1 &
      spid=$!
      ready 127.0.0.1:$port "$spid"
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
  texts=("$W/texts/short16.jsonl" "$W/texts/medium64.jsonl" "$W/texts/long256.jsonl" "$W/texts/mixed.jsonl")
  step "inproc-fp16" 75 "${E[@]}" bench "${common[@]}" --model gpu-fp16 --batch 1,32,256 --duration 2s --warmup 0.5s --out "$W/inproc-fp16.json" "${texts[@]}"
  step "inproc-fp32" 40 "${E[@]}" bench "${common[@]}" --model gpu-fp32 --batch 1,256 --duration 1.5s --warmup 0.5s --out "$W/inproc-fp32.json" "${texts[@]}"
  if [ -n "${CHECK_ORT_EXTRAS:-}" ]; then
    step "inproc-fp16-iobinding" 25 "${E[@]}" bench "${common[@]}" --cuda-io-binding --model gpu-fp16 --batch 1,256 --duration 2s --warmup 1s --out "$W/inproc-fp16-iobinding.json" "$W/texts/short16.jsonl"
    step "inproc-fp16-workers1" 20 "${E[@]}" bench "${common[@]}" --workers 1 --model gpu-fp16 --batch 256 --duration 2s --warmup 1s --out "$W/inproc-fp16-workers1.json" "$W/texts/short16.jsonl"
  fi
  # A 160 MiB arena holds the fp16 weights (~45 MB) but not a batch of 256
  # texts of 256 tokens: the engine must split it and lose no text.
  step "oom-split" 30 "${E[@]}" bench "${common[@]}" --cuda-mem-limit 160 --model gpu-fp16 --batch 256 --duration 2s --warmup 0s --out "$W/inproc-oom.json" "$W/texts/long256.jsonl"

  log "server"
  "${E[@]}" serve "${common[@]}" --embed-cache-bytes 0 --model gpu-fp16 --preload gpu-fp32 --addr 127.0.0.1:50061 --metrics-addr 127.0.0.1:9161 \
    >"$W/steps/server.log" 2>&1 &
  spid=$!
  ready 127.0.0.1:50061 "$spid"
  L=("$W/bin/load" -addr 127.0.0.1:50061 -metrics http://127.0.0.1:9161/metrics -n 4096 -conns 8 -truncate -warmup 2s)
  rm -rf "$W"/load/fp16-* "$W"/load/fp32-*
  step "load-fp16-short16" 40 "${L[@]}" -model gpu-fp16 -texts short16 -concurrency 1,256 -duration 5s -label fp16-short16 -out "$W/load/fp16-short16"
  step "load-fp16-mixed" 40 "${L[@]}" -model gpu-fp16 -texts mixed -concurrency 1,256 -duration 5s -label fp16-mixed -out "$W/load/fp16-mixed"
  step "load-fp16-medium64" 20 "${L[@]}" -model gpu-fp16 -texts medium64 -concurrency 256 -duration 4s -label fp16-medium64 -out "$W/load/fp16-medium64"
  step "load-fp16-long256" 20 "${L[@]}" -model gpu-fp16 -texts long256 -concurrency 256 -duration 4s -label fp16-long256 -out "$W/load/fp16-long256"
  [ -n "${CHECK_ORT_EXTRAS:-}" ] && step "load-fp32-short16" 30 "${L[@]}" -model gpu-fp32 -texts short16 -concurrency 1,256 -duration 4s -label fp32-short16 -out "$W/load/fp32-short16"
  python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("http://127.0.0.1:9161/metrics", timeout=5).read().decode())' >"$W/metrics.txt" 2>/dev/null
  kill -TERM "$spid" 2>/dev/null
  wait "$spid"
  echo "server exit status $?" >>"$W/steps/server.log"

  report
  log "call 3 done"
fi
