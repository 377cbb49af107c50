#!/usr/bin/env bash
# proto.sh: regenerate, with pinned tools, so that every machine produces
# byte-identical code:
#   proto/embedd/v1/*.pb.go             from the .proto files beside them (the API);
#   internal/bertonnx/onnxpb/onnx.pb.go from onnx/onnx.proto of a PyPI wheel of
#                                       onnx (ONNX_VERSION below), pinned by sha256:
#                                       the model format internal/bertonnx writes.
# The tools:
#   protoc             from the PyPI package grpcio-tools (python -m grpc_tools.protoc),
#                      in a venv under $EMBEDD_CACHE_DIR/proto-venv-<version>;
#   protoc-gen-go      google.golang.org/protobuf, the version go.mod requires;
#   protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc;
# the Go plugins are built from source at exact versions (module mode,
# checked against go.sum's checksum database) into $EMBEDD_CACHE_DIR/proto-bin-<versions>.
#
# Usage: scripts/proto.sh          regenerate in place (what `make proto` runs)
#        scripts/proto.sh --check  regenerate into a temporary directory and
#                                  fail if the committed code differs
set -euo pipefail
cd "$(dirname "$0")/.."

# Pins. protoc-gen-go must equal go.mod's google.golang.org/protobuf (checked
# below): the generated code asserts the runtime is at least its generator.
GRPCIO_TOOLS=1.85.1
PY_PINS=(
  "grpcio-tools==$GRPCIO_TOOLS"
  grpcio==1.85.1
  protobuf==7.36.2
  setuptools==84.2.1
)
PROTOC_GEN_GO=v1.36.12
PROTOC_GEN_GO_GRPC=v1.6.2

PROTO_ROOT=proto
PROTO_DIRS=(embedd/v1)

# The ONNX schema. onnx.proto is taken from one fixed wheel of the onnx
# release (any wheel of a release ships the same onnx/onnx.proto; this one is
# named by platform so that pip fetches the same file on every machine), and
# checked twice: the wheel against its sha256 (pip --require-hashes) and the
# extracted onnx.proto against its own. onnx-ml.proto differs from onnx.proto
# only in a comment; the exporter uses no ML extension, so onnx.proto it is.
# Keep ONNX_VERSION equal to tools/requirements.txt's onnx, which
# tools/bertonnx/verify.py checks exports with.
ONNX_VERSION=1.23.2
ONNX_WHEEL_SHA256=c03ecf6b835d136108eeaeeafbd0026fc7b3cf98661409fbc6b63d5a29361348
ONNX_WHEEL_PLATFORM=(--platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311)
ONNX_PROTO_SHA256=547214dd049486a4d5ecbae593e9c72d90b5e8d603944b722eff469e0b5a9cc9
ONNX_GO_PACKAGE=github.com/embedd/embedd/internal/bertonnx/onnxpb
ONNX_DIR=internal/bertonnx/onnxpb

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}

mod_protobuf=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
if [ "$mod_protobuf" != "$PROTOC_GEN_GO" ]; then
  echo "proto.sh: go.mod requires google.golang.org/protobuf $mod_protobuf but protoc-gen-go is pinned at $PROTOC_GEN_GO; update PROTOC_GEN_GO" >&2
  exit 1
fi

venv=$cache/proto-venv-$GRPCIO_TOOLS
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.ok" ]; then
  echo "proto.sh: installing ${PY_PINS[*]} into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: "${PY_PINS[@]}" >&2
  touch "$venv/.ok"
fi

bin=$cache/proto-bin-go$PROTOC_GEN_GO-grpc$PROTOC_GEN_GO_GRPC
if [ ! -x "$bin/protoc-gen-go" ] || [ ! -x "$bin/protoc-gen-go-grpc" ]; then
  echo "proto.sh: building protoc-gen-go $PROTOC_GEN_GO and protoc-gen-go-grpc $PROTOC_GEN_GO_GRPC into $bin" >&2
  mkdir -p "$bin"
  for pkg in "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO" \
    "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC"; do
    GOBIN=$bin GOFLAGS=-trimpath go install "$pkg"
  done
fi

# Generate into a scratch directory first so that a failure leaves the
# committed code alone and stale files disappear.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for dir in "${PROTO_DIRS[@]}"; do
  # protoc records the file names it is given (the "source:" header), so they
  # are relative to PROTO_ROOT and sorted for a stable order.
  mapfile -t files < <(cd "$PROTO_ROOT" && printf '%s\n' "$dir"/*.proto | LC_ALL=C sort)
  mkdir -p "$tmp/$dir"
  (cd "$PROTO_ROOT" && PATH="$bin:$PATH" "$venv/bin/python" -m grpc_tools.protoc \
    -I . \
    --plugin=protoc-gen-go="$bin/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
    --go_out="$tmp" --go_opt=paths=source_relative \
    --go-grpc_out="$tmp" --go-grpc_opt=paths=source_relative \
    "${files[@]}")
  gofmt -l "$tmp/$dir" | grep . && { echo "proto.sh: generated code is not gofmt-clean" >&2; exit 1; }

  dst=$PROTO_ROOT/$dir
  if [ "$check" = 1 ]; then
    if ! diff -r -x '*.proto' "$tmp/$dir" "$dst" >&2; then
      echo "proto.sh: $dst is stale; run scripts/proto.sh" >&2
      exit 1
    fi
    continue
  fi
  rm -f "$dst"/*.pb.go
  cp "$tmp/$dir"/*.pb.go "$dst"/
  echo "proto.sh: wrote $(cd "$dst" && echo *.pb.go) in $dst" >&2
done

req_onnx=$(grep -E '^onnx==' tools/requirements.txt || true)
if [ "$req_onnx" != "onnx==$ONNX_VERSION" ]; then
  echo "proto.sh: tools/requirements.txt pins '$req_onnx' but ONNX_VERSION is $ONNX_VERSION; keep them equal" >&2
  exit 1
fi
wheel_dir=$cache/proto-onnx-$ONNX_WHEEL_SHA256
if [ ! -f "$wheel_dir/.ok" ]; then
  echo "proto.sh: downloading onnx==$ONNX_VERSION (sha256 $ONNX_WHEEL_SHA256) into $wheel_dir" >&2
  rm -rf "$wheel_dir"
  mkdir -p "$wheel_dir"
  echo "onnx==$ONNX_VERSION --hash=sha256:$ONNX_WHEEL_SHA256" >"$tmp/onnx-requirements.txt"
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    "${ONNX_WHEEL_PLATFORM[@]}" --require-hashes -r "$tmp/onnx-requirements.txt" -d "$wheel_dir" >&2
  touch "$wheel_dir/.ok"
fi
wheels=("$wheel_dir"/onnx-"$ONNX_VERSION"-*.whl)
mkdir -p "$tmp/onnx-src/onnx" "$tmp/onnx-out"
"$venv/bin/python" -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("onnx/onnx.proto"))' \
  "${wheels[0]}" >"$tmp/onnx-src/onnx/onnx.proto"
got=$(sha256sum "$tmp/onnx-src/onnx/onnx.proto" | cut -d' ' -f1)
if [ "$got" != "$ONNX_PROTO_SHA256" ]; then
  echo "proto.sh: onnx/onnx.proto of ${wheels[0]} has sha256 $got; want $ONNX_PROTO_SHA256" >&2
  exit 1
fi
# onnx.proto has no go_package option; M maps it to the Go package.
(cd "$tmp/onnx-src" && "$venv/bin/python" -m grpc_tools.protoc \
  -I . \
  --plugin=protoc-gen-go="$bin/protoc-gen-go" \
  --go_out="$tmp/onnx-out" --go_opt=paths=source_relative \
  --go_opt=Monnx/onnx.proto=$ONNX_GO_PACKAGE \
  onnx/onnx.proto)
# The generated file starts with onnx.proto's own header; say first where it
# comes from and how to regenerate it.
{
  printf '%s\n' \
    "// Go types for onnx/onnx.proto of the PyPI package onnx==$ONNX_VERSION (wheel" \
    "// sha256 $ONNX_WHEEL_SHA256)," \
    "// generated by scripts/proto.sh (make proto) with the pinned protoc and" \
    "// protoc-gen-go. Do not edit; scripts/proto.sh --check fails when stale." \
    ""
  cat "$tmp/onnx-out/onnx/onnx.pb.go"
} >"$tmp/onnx.pb.go"
gofmt -l "$tmp/onnx.pb.go" | grep . && { echo "proto.sh: generated code is not gofmt-clean" >&2; exit 1; }
if [ "$check" = 1 ]; then
  if ! diff "$tmp/onnx.pb.go" "$ONNX_DIR/onnx.pb.go" >&2; then
    echo "proto.sh: $ONNX_DIR is stale; run scripts/proto.sh" >&2
    exit 1
  fi
else
  mkdir -p "$ONNX_DIR"
  cp "$tmp/onnx.pb.go" "$ONNX_DIR/onnx.pb.go"
  echo "proto.sh: wrote onnx.pb.go in $ONNX_DIR" >&2
fi
