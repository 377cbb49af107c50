package embedout_test

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/embedd/embedd/internal/embedout"
	"github.com/embedd/embedd/internal/quant"
)

// TestEncode pins the codes of each output type: the bytes clients of the
// server and of `embedd embed` receive.
func TestEncode(t *testing.T) {
	vecs := [][]float32{
		{1, -0.5, 0, 0.25, -1, 0.1, 0.2, -0.3, 0.9},
		{0, 0, 0},
	}
	f, err := embedout.Encode(vecs, embedout.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if &f[0].Float32[0] != &vecs[0][0] || f[0].Int8 != nil || f[0].Binary != nil {
		t.Errorf("float32: got %+v; want the vector itself and nothing else", f[0])
	}

	q, err := embedout.Encode(vecs, embedout.Int8)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int8{127, -64, 0, 32, -127, 13, 25, -38, 114}; !slices.Equal(q[0].Int8, want) {
		t.Errorf("int8 codes = %v; want %v", q[0].Int8, want)
	}
	if want := float32(1.0 / 127); q[0].Scale != want || q[0].Float32 != nil {
		t.Errorf("int8 scale = %v, float32 %v; want %v, nil", q[0].Scale, q[0].Float32, want)
	}
	if !slices.Equal(q[1].Int8, []int8{0, 0, 0}) || q[1].Scale != 0 {
		t.Errorf("zero vector: got %v scale %v; want zeros, scale 0", q[1].Int8, q[1].Scale)
	}

	b, err := embedout.Encode(vecs, embedout.Binary)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0b10010110, 0b10000000}; !slices.Equal(b[0].Binary, want) {
		t.Errorf("binary = %08b; want %08b", b[0].Binary, want)
	}
	if want := []byte{0}; !slices.Equal(b[1].Binary, want) {
		t.Errorf("binary of zeros = %08b; want %08b", b[1].Binary, want)
	}
}

// TestEncodeAgreesWithQuant: the encodings are quant's, element for element.
func TestEncodeAgreesWithQuant(t *testing.T) {
	v := make([]float32, 384)
	for i := range v {
		v[i] = float32(math.Sin(float64(i) * 0.37))
	}
	q, err := embedout.Encode([][]float32{v}, embedout.Int8)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := quant.QuantizeInt8(v)
	if !slices.Equal(q[0].Int8, want.Codes) || q[0].Scale != want.Scale {
		t.Errorf("int8 differs from quant.QuantizeInt8")
	}
	b, err := embedout.Encode([][]float32{v}, embedout.Binary)
	if err != nil {
		t.Fatal(err)
	}
	wantB, _ := quant.PackBinary(v)
	if !slices.Equal(b[0].Binary, wantB) {
		t.Errorf("binary differs from quant.PackBinary")
	}
}

func TestEncodeErrors(t *testing.T) {
	vecs := [][]float32{{1, 2}, {1, float32(math.NaN())}}
	for _, typ := range []embedout.Type{embedout.Int8, embedout.Binary} {
		_, err := embedout.Encode(vecs, typ)
		if !errors.Is(err, quant.ErrNonFinite) || err.Error()[:9] != "texts[1]:" {
			t.Errorf("%v: got %v; want texts[1]: ... quant.ErrNonFinite", typ, err)
		}
	}
	if _, err := embedout.Encode(vecs, embedout.Float32); err != nil {
		t.Errorf("float32 is not checked: got %v; want nil", err)
	}
	if _, err := embedout.Encode(vecs, embedout.Type(7)); err == nil {
		t.Error("type 7: got nil error; want one")
	}
}

func TestParseType(t *testing.T) {
	for _, typ := range []embedout.Type{embedout.Float32, embedout.Int8, embedout.Binary} {
		if got, ok := embedout.ParseType(typ.String()); !ok || got != typ {
			t.Errorf("ParseType(%q) = %v, %v; want %v, true", typ.String(), got, ok, typ)
		}
	}
	for _, name := range []string{"", "fp16", "INT8"} {
		if _, ok := embedout.ParseType(name); ok {
			t.Errorf("ParseType(%q) = _, true; want false", name)
		}
	}
	if got := embedout.Type(9).String(); got != "Type(9)" {
		t.Errorf("String() = %q; want Type(9)", got)
	}
}

func TestInt8Bytes(t *testing.T) {
	if got, want := embedout.Int8Bytes([]int8{0, 1, -1, 127, -127}), []byte{0, 1, 0xff, 0x7f, 0x81}; !slices.Equal(got, want) {
		t.Errorf("got %x; want %x", got, want)
	}
}
