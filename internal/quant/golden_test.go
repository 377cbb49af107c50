package quant

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"testing"
)

// golden is testdata/golden.json, written by tools/quant/gen_golden.py with
// numpy; see that script for what each section holds.
type golden struct {
	Numpy         string      `json:"numpy"`
	Dim           int         `json:"dim"`
	Calibration   [][]float32 `json:"calibration"`
	RangesMin     []float32   `json:"ranges_min"`
	RangesMax     []float32   `json:"ranges_max"`
	Steps         []float32   `json:"steps"`
	X             [][]float32 `json:"x"`
	STInt8        [][]int8    `json:"st_int8"`
	Calibrated    [][]int8    `json:"calibrated"`
	UBinary       [][]int     `json:"ubinary"`
	UBinaryOddDim int         `json:"ubinary_odd_dim"`
	UBinaryOdd    [][]int     `json:"ubinary_odd"`
	HammingConsec []int       `json:"hamming_consecutive"`
	Int8X         [][]float32 `json:"int8_x"`
	Int8Codes     [][]int8    `json:"int8_codes"`
	Int8Scales    []float32   `json:"int8_scales"`
}

func loadGolden(t *testing.T) golden {
	t.Helper()
	data, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.X) == 0 || len(g.Int8X) == 0 {
		t.Fatal("golden file has no cases")
	}
	return g
}

// bytesOf converts a JSON row of numbers; encoding/json would expect base64
// for a []byte field.
func bytesOf(row []int) []byte {
	b := make([]byte, len(row))
	for i, v := range row {
		b[i] = byte(v)
	}
	return b
}

// TestGoldenSentenceTransformersInt8 checks QuantizeSTInto against numpy
// running sentence-transformers' formula, wrap-around and division by zero
// included, and the steps it derives bit for bit.
func TestGoldenSentenceTransformersInt8(t *testing.T) {
	g := loadGolden(t)
	c, err := Calibrate(g.Calibration)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Min(), g.RangesMin) || !slices.Equal(c.Max(), g.RangesMax) {
		t.Fatalf("got ranges [%v, %v]; want [%v, %v]", c.Min(), c.Max(), g.RangesMin, g.RangesMax)
	}
	for i, s := range g.Steps {
		if math.Float32bits(c.stepST[i]) != math.Float32bits(s) {
			t.Errorf("step %d: got %v; want %v", i, c.stepST[i], s)
		}
	}
	got := make([]int8, g.Dim)
	for i, x := range g.X {
		if err := c.QuantizeSTInto(got, x); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, g.STInt8[i]) {
			t.Errorf("row %d: got %v; want %v", i, got, g.STInt8[i])
		}
	}
}

func TestGoldenCalibratedInt8(t *testing.T) {
	g := loadGolden(t)
	c, err := NewCalibration(g.RangesMin, g.RangesMax)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range g.X {
		got, err := c.Quantize(x)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, g.Calibrated[i]) {
			t.Errorf("row %d: got %v; want %v", i, got, g.Calibrated[i])
		}
	}
}

func TestGoldenUBinary(t *testing.T) {
	g := loadGolden(t)
	words := make([][]uint64, len(g.X))
	for i, x := range g.X {
		got, err := PackBinary(x)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, bytesOf(g.UBinary[i])) {
			t.Errorf("row %d: got %08b; want %08b", i, got, g.UBinary[i])
		}
		odd, err := PackBinary(x[:g.UBinaryOddDim])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(odd, bytesOf(g.UBinaryOdd[i])) {
			t.Errorf("row %d, %d dims: got %08b; want %08b", i, g.UBinaryOddDim, odd, g.UBinaryOdd[i])
		}
		if words[i], err = PackBinaryWords(x); err != nil {
			t.Fatal(err)
		}
		fromBytes := make([]uint64, BinaryWords(g.Dim))
		if err := WordsFromBytes(fromBytes, bytesOf(g.UBinary[i])); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(words[i], fromBytes) {
			t.Errorf("row %d: got words %x; want %x (from numpy bytes)", i, words[i], fromBytes)
		}
	}
	for i, want := range g.HammingConsec {
		if got := Hamming(words[i], words[i+1]); got != want {
			t.Errorf("Hamming(row %d, row %d): got %v; want %v", i, i+1, got, want)
		}
		if got := HammingBytes(bytesOf(g.UBinary[i]), bytesOf(g.UBinary[i+1])); got != want {
			t.Errorf("HammingBytes(row %d, row %d): got %v; want %v", i, i+1, got, want)
		}
	}
}

func TestGoldenPerVectorInt8(t *testing.T) {
	g := loadGolden(t)
	for i, x := range g.Int8X {
		got, err := QuantizeInt8(x)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Codes, g.Int8Codes[i]) || got.Scale != g.Int8Scales[i] {
			t.Errorf("row %d: got %v × %v; want %v × %v", i, got.Codes, got.Scale, g.Int8Codes[i], g.Int8Scales[i])
		}
	}
}
