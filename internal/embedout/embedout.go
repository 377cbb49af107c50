// Package embedout encodes embedding vectors in the output types a caller
// asks for: float32 as computed, int8 with one scale per vector
// (quant.QuantizeInt8), or binary sign bits packed most significant bit
// first (quant.PackBinary). The gRPC responses (internal/server) and the
// JSON of `embedd embed` (cmd/embedd) both encode through it, so the two
// give the same codes for the same vectors.
//
// It holds no state; every function is safe for concurrent use.
package embedout

import (
	"fmt"

	"github.com/embedd/embedd/internal/quant"
)

// Type is an output type.
type Type int

// The output types. The zero Type is Float32.
const (
	Float32 Type = iota
	Int8
	Binary
)

var names = [...]string{Float32: "float32", Int8: "int8", Binary: "binary"}

// String returns the name ParseType accepts: "float32", "int8" or "binary".
func (t Type) String() string {
	if t < 0 || int(t) >= len(names) {
		return fmt.Sprintf("Type(%d)", int(t))
	}
	return names[t]
}

// ParseType returns the Type called name, and false if there is none.
func ParseType(name string) (Type, bool) {
	for t, n := range names {
		if n == name {
			return Type(t), true
		}
	}
	return 0, false
}

// Vector is one encoded vector. Exactly the fields of its Type are set.
type Vector struct {
	// Float32 is the vector itself (not a copy).
	Float32 []float32
	// Int8 and Scale: element k stands for float32(Int8[k])·Scale.
	Int8  []int8
	Scale float32
	// Binary holds one bit per element, set when the element is > 0, packed
	// most significant bit first; the last byte is padded with zeros.
	Binary []byte
}

// Encode encodes every vector as t. An error names the vector by its
// index as texts[i], the input it was computed from; it wraps the quant
// error (quant.ErrEmpty, quant.ErrNonFinite).
func Encode(vectors [][]float32, t Type) ([]Vector, error) {
	if t < 0 || int(t) >= len(names) {
		return nil, fmt.Errorf("embedout: output type %d is not defined", int(t))
	}
	out := make([]Vector, len(vectors))
	for i, v := range vectors {
		var err error
		switch t {
		case Float32:
			out[i].Float32 = v
		case Int8:
			var q quant.Int8
			q, err = quant.QuantizeInt8(v)
			out[i].Int8, out[i].Scale = q.Codes, q.Scale
		case Binary:
			out[i].Binary, err = quant.PackBinary(v)
		}
		if err != nil {
			return nil, fmt.Errorf("texts[%d]: %w", i, err)
		}
	}
	return out, nil
}

// Int8Bytes returns codes as bytes, two's complement, as protobuf bytes
// fields carry them.
func Int8Bytes(codes []int8) []byte {
	b := make([]byte, len(codes))
	for k, c := range codes {
		b[k] = byte(c)
	}
	return b
}
