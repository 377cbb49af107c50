#!/usr/bin/env bash
# proto.sh: regenerate proto/embedd/v1/*.pb.go from the .proto files with
# pinned tools, so that every machine produces byte-identical code:
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
