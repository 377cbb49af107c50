// Package onnxpb holds the Go types of onnx/onnx.proto (protobuf package
// onnx, proto2): the ONNX model format that internal/bertonnx writes.
//
// onnx.pb.go is generated and never edited by hand: scripts/proto.sh
// (make proto) regenerates it from onnx/onnx.proto of the PyPI package onnx,
// whose version and wheel sha256 it pins, with the same pinned protoc and
// protoc-gen-go as the API; scripts/proto.sh --check fails when it is stale.
// The package has no state of its own; its messages are safe for concurrent
// reads, as any generated protobuf message is.
package onnxpb
