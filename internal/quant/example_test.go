package quant_test

import (
	"encoding/json"
	"fmt"

	"github.com/embedd/embedd/internal/quant"
)

func ExampleQuantizeInt8() {
	v, err := quant.QuantizeInt8([]float32{0.5, -0.25, 0.125, 0})
	if err != nil {
		panic(err)
	}
	fmt.Println(v.Codes, v.Scale*127)
	fmt.Println(v.Dequantize())
	// Output:
	// [127 -64 32 0] 0.5
	// [0.5 -0.2519685 0.12598425 0]
}

func ExampleCalibration() {
	// Calibrate on a sample of the collection and store the result beside it.
	cal, err := quant.Calibrate([][]float32{{-1, 0, 2}, {1, 0.5, 4}})
	if err != nil {
		panic(err)
	}
	stored, _ := json.Marshal(cal)
	fmt.Println(string(stored))

	var loaded quant.Calibration
	if err := json.Unmarshal(stored, &loaded); err != nil {
		panic(err)
	}
	// Mid-range values sit half-way between codes -1 and 0 and round away
	// from zero; 9 is above the calibrated max and clamps.
	codes, _ := loaded.Quantize([]float32{0, 0.25, 9})
	fmt.Println(codes)
	// Output:
	// {"version":1,"min":[-1,0,2],"max":[1,0.5,4]}
	// [-1 -1 127]
}

// Binary search keeps 32 times less than float32 vectors; fetching a few
// times k candidates and rescoring them with the float query and vectors
// recovers most of the lost ranking quality.
func ExampleBinaryMatrix_Search() {
	db := [][]float32{
		{0.9, 0.1, -0.3, 0.2},
		{0.8, -0.1, -0.5, 0.1},
		{-0.7, 0.6, 0.2, -0.1},
		{0.85, 0.2, -0.2, 0.3},
	}
	m, err := quant.PackBinaryMatrix(db)
	if err != nil {
		panic(err)
	}
	query := []float32{0.8, 0.05, -0.45, 0.15}
	const k, factor = 2, 2
	cands, err := m.Search(query, k*factor)
	if err != nil {
		panic(err)
	}
	rescore := make([]quant.FloatCandidate, len(cands))
	for i, c := range cands {
		rescore[i] = quant.FloatCandidate{ID: c.ID, Vector: db[c.ID]}
	}
	top, err := quant.RescoreFloat(query, rescore, k)
	if err != nil {
		panic(err)
	}
	for _, r := range top {
		fmt.Printf("%d %.3f\n", r.ID, r.Score)
	}
	// Output:
	// 0 0.890
	// 1 0.875
}
