package quant

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestCalibrate(t *testing.T) {
	tests := []struct {
		name     string
		vectors  [][]float32
		min, max []float32
		wantErr  error
	}{
		{"ranges", [][]float32{{1, -2, 0}, {3, -1, 0}, {2, -5, 0}}, []float32{1, -5, 0}, []float32{3, -1, 0}, nil},
		{"single vector", [][]float32{{1, 2}}, []float32{1, 2}, []float32{1, 2}, nil},
		{"no vectors", nil, nil, nil, ErrEmpty},
		{"no dimensions", [][]float32{{}}, nil, nil, ErrEmpty},
		{"ragged", [][]float32{{1, 2}, {1}}, nil, nil, ErrLengthMismatch},
		{"NaN", [][]float32{{1, 2}, {nan, 1}}, nil, nil, ErrNonFinite},
		{"Inf", [][]float32{{pinf, 2}}, nil, nil, ErrNonFinite},
	}
	for _, tt := range tests {
		c, err := Calibrate(tt.vectors)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: got error %v; want %v", tt.name, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if !slices.Equal(c.Min(), tt.min) || !slices.Equal(c.Max(), tt.max) || c.Dim() != len(tt.min) {
			t.Errorf("%s: got [%v, %v] dim %d; want [%v, %v]", tt.name, c.Min(), c.Max(), c.Dim(), tt.min, tt.max)
		}
	}
}

func TestNewCalibrationErrors(t *testing.T) {
	tests := []struct {
		name     string
		min, max []float32
		wantErr  error
	}{
		{"valid", []float32{0, 1}, []float32{1, 1}, nil},
		{"empty", nil, nil, ErrEmpty},
		{"length mismatch", []float32{0, 1}, []float32{1}, ErrInvalidCalibration},
		{"min above max", []float32{2}, []float32{1}, ErrInvalidCalibration},
		{"NaN bound", []float32{nan}, []float32{1}, ErrInvalidCalibration},
		{"infinite bound", []float32{0}, []float32{pinf}, ErrInvalidCalibration},
	}
	for _, tt := range tests {
		if _, err := NewCalibration(tt.min, tt.max); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: got %v; want %v", tt.name, err, tt.wantErr)
		}
	}
}

func TestNewCalibrationCopies(t *testing.T) {
	lo, hi := []float32{0}, []float32{1}
	c, err := NewCalibration(lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	lo[0], hi[0] = 5, 6
	c.Min()[0] = 7
	if got := c.Min()[0]; got != 0 {
		t.Errorf("got min %v after caller writes; want 0", got)
	}
	if got := c.Max()[0]; got != 1 {
		t.Errorf("got max %v after caller writes; want 1", got)
	}
}

func TestCalibrationQuantize(t *testing.T) {
	// Range [0, 255] per dimension: step 1, so x maps to round(x) - 128.
	// Dimension 2 is degenerate.
	c, err := NewCalibration([]float32{0, 0, 4}, []float32{255, 255, 4})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		x      []float32
		want   []int8
		wantST []int8
	}{
		{"endpoints", []float32{0, 255, 4}, []int8{-128, 127, -128}, []int8{-128, 127, 0}},
		{"rounds half away, ST truncates", []float32{0.6, 127.5, 4}, []int8{-127, -1, -128}, []int8{-127, 0, 0}},
		{"negative side", []float32{100.4, 100.6, 4}, []int8{-28, -27, -128}, []int8{-27, -27, 0}},
		{"just above max clamps, ST wraps", []float32{256, 300, 5}, []int8{127, 127, -128}, []int8{-128, -84, 0}},
		{"below min clamps, ST wraps", []float32{-1, -300, 3}, []int8{-128, -128, -128}, []int8{127, 84, 0}},
		{"far out", []float32{1e30, -1e30, 1e30}, []int8{127, -128, -128}, []int8{0, 0, 0}},
	}
	for _, tt := range tests {
		got, err := c.Quantize(tt.x)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v; want %v", tt.name, got, tt.want)
		}
		gotST := make([]int8, 3)
		if err := c.QuantizeSTInto(gotST, tt.x); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !slices.Equal(gotST, tt.wantST) {
			t.Errorf("%s (ST): got %v; want %v", tt.name, gotST, tt.wantST)
		}
	}
}

func TestCalibrationErrors(t *testing.T) {
	c, err := NewCalibration([]float32{0, 0}, []float32{1, 1})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		call    func() error
		wantErr error
	}{
		{"quantize wrong dim", func() error { _, err := c.Quantize([]float32{1}); return err }, ErrLengthMismatch},
		{"quantize NaN", func() error { _, err := c.Quantize([]float32{1, nan}); return err }, ErrNonFinite},
		{"quantize Inf", func() error { _, err := c.Quantize([]float32{ninf, 0}); return err }, ErrNonFinite},
		{"quantize short dst", func() error { return c.QuantizeInto(make([]int8, 1), []float32{1, 1}) }, ErrLengthMismatch},
		{"ST short dst", func() error { return c.QuantizeSTInto(make([]int8, 3), []float32{1, 1}) }, ErrLengthMismatch},
		{"ST NaN", func() error { return c.QuantizeSTInto(make([]int8, 2), []float32{nan, 1}) }, ErrNonFinite},
		{"dequantize wrong dim", func() error { _, err := c.Dequantize([]int8{1, 2, 3}); return err }, ErrLengthMismatch},
		{"dequantize short dst", func() error { return c.DequantizeInto(make([]float32, 1), []int8{1, 2}) }, ErrLengthMismatch},
		{"zero value calibration", func() error { _, err := new(Calibration).Quantize([]float32{1}); return err }, ErrLengthMismatch},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: got %v; want %v", tt.name, err, tt.wantErr)
		}
	}
}

// Within the calibrated range the error is at most half a step; a
// degenerate dimension reproduces its constant exactly; nothing is NaN.
func TestCalibrationRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	const dim = 96
	vectors := make([][]float32, 500)
	for i := range vectors {
		vectors[i] = randFloats(rng, dim)
		for j := range vectors[i] {
			vectors[i][j] = vectors[i][j]*float32(j+1)/10 + float32(j%7)
		}
		vectors[i][17] = -0.75 // degenerate
	}
	c, err := Calibrate(vectors)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := c.Min(), c.Max()
	for i, x := range vectors {
		q, err := c.Quantize(x)
		if err != nil {
			t.Fatal(err)
		}
		y, err := c.Dequantize(q)
		if err != nil {
			t.Fatal(err)
		}
		for j := range x {
			step := (float64(hi[j]) - float64(lo[j])) / 255
			if d := math.Abs(float64(x[j]) - float64(y[j])); !(d <= step/2*1.0001+1e-7) {
				t.Fatalf("vector %d dim %d: |%v - %v| = %v; want <= %v", i, j, x[j], y[j], d, step/2)
			}
		}
		if y[17] != -0.75 {
			t.Fatalf("degenerate dimension: got %v; want -0.75", y[17])
		}
	}
}

func TestCalibrationJSONRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	vectors := [][]float32{randFloats(rng, 384), randFloats(rng, 384), randFloats(rng, 384)}
	vectors[0][3] = 1e-45
	vectors[1][3] = math.MaxFloat32
	c, err := Calibrate(vectors)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back Calibration
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Min(), c.Min()) || !slices.Equal(back.Max(), c.Max()) {
		t.Errorf("got ranges that differ after a JSON round trip; want identical")
	}
	x := randFloats(rng, 384)
	want, _ := c.Quantize(x)
	got, err := back.Quantize(x)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v, %v from decoded calibration; want %v", got, err, want)
	}
}

func TestCalibrationUnmarshalErrors(t *testing.T) {
	var syntax *json.UnmarshalTypeError
	tests := []struct {
		name    string
		data    string
		wantErr error
		wantAs  any // an error type errors.As must find, instead of wantErr
	}{
		{"valid", `{"version":1,"min":[0,1],"max":[1,2]}`, nil, nil},
		{"wrong version", `{"version":2,"min":[0],"max":[1]}`, ErrInvalidCalibration, nil},
		{"missing version", `{"min":[0],"max":[1]}`, ErrInvalidCalibration, nil},
		{"min above max", `{"version":1,"min":[3],"max":[1]}`, ErrInvalidCalibration, nil},
		{"length mismatch", `{"version":1,"min":[0,0],"max":[1]}`, ErrInvalidCalibration, nil},
		{"no dimensions", `{"version":1,"min":[],"max":[]}`, ErrEmpty, nil},
		{"float32 overflow", `{"version":1,"min":[0],"max":[1e39]}`, nil, &syntax},
		{"string bound", `{"version":1,"min":["0"],"max":[1]}`, nil, &syntax},
	}
	for _, tt := range tests {
		var c Calibration
		err := json.Unmarshal([]byte(tt.data), &c)
		if tt.wantAs != nil {
			if !errors.As(err, tt.wantAs) {
				t.Errorf("%s: got %v; want %T", tt.name, err, tt.wantAs)
			}
			continue
		}
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: got %v; want %v", tt.name, err, tt.wantErr)
		}
	}
}

func FuzzCalibrationUnmarshalJSON(f *testing.F) {
	f.Add([]byte(`{"version":1,"min":[0,1],"max":[1,2]}`))
	f.Add([]byte(`{"version":1,"min":[-1e38],"max":[3e38]}`))
	f.Add([]byte(`{"version":1,"min":[0],"max":[0]}`))
	f.Add([]byte(`{"version":1,"min":[1],"max":[0]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Calibration
		if err := json.Unmarshal(data, &c); err != nil {
			return
		}
		// Whatever decodes must quantize and dequantize without NaN.
		lo, hi := c.Min(), c.Max()
		if len(lo) == 0 {
			return
		}
		x := make([]float32, len(lo))
		for i := range x {
			x[i] = lo[i]/2 + hi[i]/2
		}
		q, err := c.Quantize(x)
		if err != nil {
			t.Fatalf("quantize decoded calibration: %v", err)
		}
		y, err := c.Dequantize(q)
		if err != nil {
			t.Fatalf("dequantize decoded calibration: %v", err)
		}
		for i, v := range y {
			if v != v {
				t.Fatalf("dimension %d dequantized to NaN", i)
			}
		}
		again, err := json.Marshal(&c)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var c2 Calibration
		if err := json.Unmarshal(again, &c2); err != nil {
			t.Fatalf("decode re-encoded %s: %v", again, err)
		}
	})
}

// TestCalibrationHeldOut is why Quantize clamps: vectors outside the
// calibration sample have a few values beyond the calibrated ranges, and
// sentence-transformers' wrap-around turns each into a large error.
func TestCalibrationHeldOut(t *testing.T) {
	db, _ := synthEmbeddings(3, 3000, 0, 384)
	c, err := Calibrate(db[:500])
	if err != nil {
		t.Fatal(err)
	}
	codes := make([]int8, 384)
	y := make([]float32, 384)
	var round, st cosineStats
	for _, x := range db[500:] {
		for _, q := range []struct {
			quantize func([]int8, []float32) error
			stats    *cosineStats
		}{{c.QuantizeInto, &round}, {c.QuantizeSTInto, &st}} {
			if err := q.quantize(codes, x); err != nil {
				t.Fatal(err)
			}
			if err := c.DequantizeInto(y, codes); err != nil {
				t.Fatal(err)
			}
			q.stats.add(cosine64(x, y))
		}
	}
	t.Logf("held-out cosine: round+clamp mean %.6f min %.6f; truncate+wrap mean %.6f min %.6f",
		round.mean(), round.min, st.mean(), st.min)
	if round.min < 0.99 {
		t.Errorf("round+clamp min cosine: got %.4f; want >= 0.99", round.min)
	}
	if st.min > round.min-0.05 {
		t.Errorf("truncate+wrap min cosine: got %.4f; want well below round+clamp's %.4f", st.min, round.min)
	}
}
