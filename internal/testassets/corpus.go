package testassets

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"testing"
)

// ReadTexts reads a JSON-lines file of {"text": ...} rows, such as the
// parity corpus internal/engine/testdata/parity/texts.jsonl.
func ReadTexts(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	var texts []string
	for sc.Scan() {
		var row struct{ Text string }
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("%s: line %d: %v", path, len(texts)+1, err)
		}
		texts = append(texts, row.Text)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return texts
}

// ReadVectors reads n little-endian float32 vectors of dims values (the
// reference vectors of the parity corpus); the file must hold exactly that.
func ReadVectors(t testing.TB, path string, n, dims int) [][]float32 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != n*dims*4 {
		t.Fatalf("%s: %d bytes; want %d vectors of %d (%d bytes)", path, len(raw), n, dims, n*dims*4)
	}
	out := make([][]float32, n)
	for i := range out {
		out[i] = make([]float32, dims)
		for k := range out[i] {
			out[i][k] = math.Float32frombits(binary.LittleEndian.Uint32(raw[(i*dims+k)*4:]))
		}
	}
	return out
}
