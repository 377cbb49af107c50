package bertonnx

import (
	"errors"
	"testing"
)

func TestParseSafetensorsHeader(t *testing.T) {
	hdr := `{"__metadata__":{"format":"pt"},` +
		`"b":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]},` +
		`"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},` +
		`"odd":{"dtype":"F8_E8M0","shape":[4],"data_offsets":[32,33]}}`
	got, err := parseSafetensorsHeader([]byte(hdr), 100, 40)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d tensors; want 3", len(got))
	}
	if b := got["b"]; b.dtype != "F32" || b.begin != 108 || b.end != 132 || len(b.shape) != 2 {
		t.Errorf("b = %+v; want F32 [2 3] at [108, 132)", b)
	}

	bad := []struct {
		name, hdr string
	}{
		{"array", `[]`},
		{"no dtype", `{"a":{"shape":[1],"data_offsets":[0,4]}}`},
		{"one offset", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`},
		{"negative offset", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`},
		{"reversed offsets", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`},
		{"past end", `{"a":{"dtype":"F32","shape":[20],"data_offsets":[0,80]}}`},
		{"negative dim", `{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`},
		{"overflowing shape", `{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`},
		{"size mismatch", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`},
		{"shape not ints", `{"a":{"dtype":"F32","shape":["x"],"data_offsets":[0,4]}}`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseSafetensorsHeader([]byte(tc.hdr), 8, 40); !errors.Is(err, ErrBadSafetensors) {
				t.Errorf("err = %v; want %v", err, ErrBadSafetensors)
			}
		})
	}
}

func FuzzParseSafetensorsHeader(f *testing.F) {
	f.Add([]byte(`{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`), int64(8))
	f.Add([]byte(`{"a":{"dtype":"BF16","shape":[1,0],"data_offsets":[4,4]}}`), int64(4))
	f.Add([]byte(`{}`), int64(0))
	f.Fuzz(func(t *testing.T, hdr []byte, dataSize int64) {
		if dataSize < 0 {
			dataSize = -dataSize
		}
		const start = 1000
		got, err := parseSafetensorsHeader(hdr, start, dataSize)
		if err != nil {
			if !errors.Is(err, ErrBadSafetensors) {
				t.Fatalf("error %v does not wrap ErrBadSafetensors", err)
			}
			return
		}
		for name, ts := range got {
			if ts.begin < start || ts.end < ts.begin || ts.end > start+dataSize {
				t.Fatalf("tensor %q: range [%d, %d) outside data [%d, %d)", name, ts.begin, ts.end, start, start+dataSize)
			}
			if es, ok := dtypeSizes[ts.dtype]; ok {
				n := es
				for _, d := range ts.shape {
					n *= d
				}
				if n != ts.end-ts.begin {
					t.Fatalf("tensor %q: %d bytes for %s%v", name, ts.end-ts.begin, ts.dtype, ts.shape)
				}
			}
		}
	})
}
