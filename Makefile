# embedd — see README.md. Everything downloaded goes to $(EMBEDD_CACHE_DIR)
# (default ~/.cache/embedd) and is verified by sha256.
SHELL := /bin/bash
export EMBEDD_CACHE_DIR ?= $(HOME)/.cache/embedd
GO ?= go
BIN := bin/embedd
MODELS := all-minilm-l6-v2 all-minilm-l6-v2-int8 all-minilm-l6-v2-fp16 all-minilm-l6-v2-q8
PY := $(shell scripts/pyenv.sh --print 2>/dev/null)

.PHONY: all build setup setup-gpu build-cuda ptx ptx-check lint-docker gpu-carry gpu-check-dry run serve services services-stop test test-short vet bench golden proto fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/embedd

# Download and verify the ONNX Runtime library and the models (cached).
setup: build
	$(BIN) runtime pull
	$(BIN) models pull $(MODELS)

# Download and verify the GPU build of ONNX Runtime (CUDA 13 provider, about
# 300 MB; cached). `make test` needs it, `make serve` does not.
setup-gpu: build
	$(BIN) runtime pull --gpu

# Compile and vet everything with the `cuda` build tag (native CUDA code on
# gorgonia.org/cu) against the pinned CUDA 12.9 headers and a libcuda link
# stub; no GPU or CUDA toolkit needed. The binaries are not run: built with
# the tag they start only where the NVIDIA driver is.
build-cuda:
	eval "$$(scripts/cuda-headers.sh)" && $(GO) build -tags cuda ./... && $(GO) vet -tags cuda ./...

# Compile internal/accel/cudakernels/kernels.cu to the embedded kernels.ptx
# with NVRTC 12.9 (pinned PyPI wheel, cached; no GPU or CUDA toolkit needed).
# Run it after every edit of kernels.cu and commit both.
ptx:
	scripts/ptx.sh gen

# Fail if kernels.ptx is not what kernels.cu compiles to, or if ptxas 12.9
# reports an error, a warning or a register spill for any of the GPU
# architectures the driver JIT-compiles it for; print each kernel's registers
# and shared memory.
ptx-check:
	scripts/ptx.sh check

# The GPU device check (bench/gpu, README "GPU"): build what the device
# needs into .gpu-carry/ (three parts under its 64 MiB upload; the device
# binary and the native encoder's test binary are built with the cuda tag),
# and dry-run the check here on the CPU with the untagged binary: the native
# steps are recorded as skipped (they need a GPU). The dry run uses the
# project's Python venv (numpy) for the report; the baseline step needs
# torch and sentence-transformers too and is recorded as failed without them.
gpu-carry: setup setup-gpu
	bench/gpu/prepare.sh

gpu-check-dry: gpu-carry
	PATH="$(dir $(PY)):$$PATH" CHECK_EMBEDD=$(CURDIR)/$(BIN) \
	CHECK_PROVIDER=cpu CHECK_TORCH_DEVICE=cpu CHECK_ST_BATCHES=1,32 CHECK_ST_SECONDS=0.3 CHECK_LIMIT_S=900 \
	  CHECK_WORK=/tmp/embedd-gpu-dry OUT=/tmp/embedd-gpu-dry/out bench/gpu/check.sh

# Lint the CPU Dockerfile and Dockerfile.cuda with hadolint (pinned; no
# Docker engine needed).
lint-docker:
	scripts/hadolint.sh Dockerfile Dockerfile.cuda

# Validate deploy/k8s/*.yaml against the Kubernetes API's JSON schemas,
# strictly and offline, for Kubernetes 1.33 and 1.37 (kubeconform, pinned,
# from the Go module proxy; the schemas from the pinned PyPI wheel
# kubernetes-validate). cmd/embedd/k8sjob_test.go runs the Job's shards.
.PHONY: lint-k8s
lint-k8s:
	scripts/kubeconform.sh

# Set up, then embed a sentence with the default model.
run: setup
	$(BIN) embed "embedd turns text into vectors"

# Set up, then run the gRPC server on 127.0.0.1:50051 (metrics on :9090).
serve: setup
	$(BIN) serve

vet:
	$(GO) vet ./...

# Real Redis (Debian redis-server, 127.0.0.1:6390) and Milvus (PyPI
# milvus==2.3.5, 127.0.0.1:19530) for the store tests; they keep running
# until `make services-stop`.
# The addresses are exported to the tests and benchmarks only: `make serve`
# uses the embedded store unless EMBEDD_REDIS_ADDR / EMBEDD_MILVUS_ADDR are
# set in the environment.
# The Redis Cluster (scripts/redis-cluster.sh: three masters, three
# replicas on 127.0.0.1:7001-7006) runs the cluster suites.
TEST_STORES := EMBEDD_REDIS_ADDR=$${EMBEDD_REDIS_ADDR:-127.0.0.1:6390} EMBEDD_MILVUS_ADDR=$${EMBEDD_MILVUS_ADDR:-127.0.0.1:19530} EMBEDD_REDIS_CLUSTER_ADDRS=$${EMBEDD_REDIS_CLUSTER_ADDRS:-127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005,127.0.0.1:7006}
services:
	scripts/redis.sh start
	scripts/redis-cluster.sh start
	scripts/milvus.sh start

services-stop:
	-scripts/milvus.sh stop
	-scripts/redis-cluster.sh stop
	-scripts/redis.sh stop

# The test command of the README and CI: real runtime, real models, real
# Redis and Milvus. A test whose asset or server is missing fails.
test: setup setup-gpu services vet build-cuda ptx-check lint-k8s
	$(TEST_STORES) EMBEDD_REQUIRE_ASSETS=1 EMBEDD_REQUIRE_STORES=1 EMBEDD_TOOLS_PYTHON=$$(scripts/pyenv.sh) $(GO) test -race -count=1 -timeout 20m ./...
	# The quantization quality test is single-threaded and skips under -race
	# (10,000 vectors); it runs here without it.
	$(GO) test -count=1 -run '^TestEvaluateSynthetic$$' ./internal/quant

# Pure-Go tests only (no downloads); tests that need assets are skipped.
test-short:
	$(GO) test -count=1 ./...

# Benchmarks: Go micro-benchmarks, the quantization quality report, the
# Python baselines side by side, engine parity and the exporter check
# (verify-export). Raw output goes to bench/out/; the numbers, with date,
# commit and CPU, to bench/results/*.json and bench/results/README.md
# (committed; the README's numbers point there). `scripts/bench.sh SECTION...`
# reruns some sections (see the script).
bench: setup services
	$(TEST_STORES) scripts/bench.sh

# The exporter's independent check: tools/bertonnx/verify.py and
# verify_variants.py run the Go-exported graphs (token output, pooled, fp16)
# against a float64 numpy BertModel on about 200 sentences, onnx.checker and
# onnx's own re-serialization (byte-equal). About 10 minutes on 2 cores, so
# not in `make test`; `make bench` runs it too. Writes
# bench/results/exporter.json.
.PHONY: verify-export
verify-export: setup
	scripts/bench.sh exporter

# Regenerate golden files with the reference implementations (Python),
# including the tokenizer's Unicode tables (internal/tokenize/tables.go).
golden: setup
	scripts/golden.sh

# Regenerate proto/embedd/v1/*.pb.go with pinned protoc and plugins.
proto:
	scripts/proto.sh

# Fuzz every target in the tree (each func FuzzXxx in a _test.go under cmd/
# and internal/) in turn, each for FUZZTIME: a duration, or Nx executions
# (the counts in closing notes: FUZZTIME=1000000x FUZZFLAGS=-parallel=1; add
# -fuzzminimizetime=5s for the slow targets, whose minimizing of each new
# input otherwise runs up to a minute and stalls the count).
# FUZZ selects targets: an extended regexp matching whole names, e.g.
# `make fuzz FUZZ='FuzzOpenLog|FuzzFrames'`. Not in CI; the seeds and the
# committed corpora (testdata/fuzz/FuzzXxx) run in every `go test`. A
# failing input is written to testdata/fuzz: fix the decoder and commit it.
FUZZTIME ?= 10s
FUZZFLAGS ?=
FUZZ ?= Fuzz.*
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' cmd internal | sort); do \
	  for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
	    echo "$$t" | grep -qxE '$(FUZZ)' || continue; \
	    echo "== ./$$(dirname $$f) $$t"; \
	    $(GO) test ./$$(dirname $$f) -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS); \
	  done; \
	done

clean:
	rm -rf bin bench/out
