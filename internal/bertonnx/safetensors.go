package bertonnx

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
)

// MaxSafetensorsHeader is the largest safetensors JSON header accepted, in
// bytes. Real headers are a few KiB to a few MiB; the bound keeps a corrupt
// length prefix from causing a huge allocation.
const MaxSafetensorsHeader = 100 << 20

// stTensor is one entry of a safetensors header, with offsets made absolute.
type stTensor struct {
	dtype string
	shape []int64
	begin int64 // absolute file offset of the first byte
	end   int64 // absolute file offset one past the last byte
}

// safetensors is an open safetensors file with a validated header.
type safetensors struct {
	f       *os.File
	tensors map[string]stTensor
}

// dtypeSizes maps safetensors dtypes to their element size in bytes.
var dtypeSizes = map[string]int64{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
	"U16": 2, "I16": 2, "F16": 2, "BF16": 2,
	"U32": 4, "I32": 4, "F32": 4,
	"U64": 8, "I64": 8, "F64": 8,
}

func openSafetensors(path string) (*safetensors, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bertonnx: open weights: %w", err)
	}
	st, err := readSafetensors(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

func readSafetensors(f *os.File) (*safetensors, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("bertonnx: stat weights: %w", err)
	}
	size := fi.Size()
	var lenBuf [8]byte
	if _, err := f.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("%w: reading header length: %v", ErrBadSafetensors, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxSafetensorsHeader {
		return nil, fmt.Errorf("%w: header length %d exceeds limit %d", ErrBadSafetensors, n, MaxSafetensorsHeader)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("%w: header length %d exceeds file size %d", ErrBadSafetensors, n, size)
	}
	hdr := make([]byte, n)
	if _, err := f.ReadAt(hdr, 8); err != nil {
		return nil, fmt.Errorf("%w: reading header: %v", ErrBadSafetensors, err)
	}
	dataStart := 8 + int64(n)
	tensors, err := parseSafetensorsHeader(hdr, dataStart, size-dataStart)
	if err != nil {
		return nil, err
	}
	return &safetensors{f: f, tensors: tensors}, nil
}

// parseSafetensorsHeader parses the JSON header of a safetensors file whose
// data section starts at dataStart and holds dataSize bytes. It checks that
// every tensor's byte range lies inside the data section and, for known
// dtypes, that its length matches its shape.
func parseSafetensorsHeader(hdr []byte, dataStart, dataSize int64) (map[string]stTensor, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &raw); err != nil {
		return nil, fmt.Errorf("%w: header is not a JSON object: %v", ErrBadSafetensors, err)
	}
	out := make(map[string]stTensor, len(raw))
	// Sorted so that the first error reported does not depend on map order.
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			Dtype       string  `json:"dtype"`
			Shape       []int64 `json:"shape"`
			DataOffsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw[name], &e); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrBadSafetensors, name, err)
		}
		if e.Dtype == "" {
			return nil, fmt.Errorf("%w: tensor %q: missing dtype", ErrBadSafetensors, name)
		}
		if len(e.DataOffsets) != 2 {
			return nil, fmt.Errorf("%w: tensor %q: data_offsets has %d values; want 2", ErrBadSafetensors, name, len(e.DataOffsets))
		}
		b, end := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || end < b || end > dataSize {
			return nil, fmt.Errorf("%w: tensor %q: data_offsets [%d, %d] outside data section of %d bytes",
				ErrBadSafetensors, name, b, end, dataSize)
		}
		numel := int64(1)
		for _, d := range e.Shape {
			if d < 0 {
				return nil, fmt.Errorf("%w: tensor %q: negative dimension in shape %v", ErrBadSafetensors, name, e.Shape)
			}
			if d != 0 && numel > math.MaxInt64/d {
				return nil, fmt.Errorf("%w: tensor %q: shape %v overflows", ErrBadSafetensors, name, e.Shape)
			}
			numel *= d
		}
		if es, ok := dtypeSizes[e.Dtype]; ok {
			if numel > math.MaxInt64/es || numel*es != end-b {
				return nil, fmt.Errorf("%w: tensor %q: %s%v needs %d bytes; data_offsets give %d",
					ErrBadSafetensors, name, e.Dtype, e.Shape, satMul(numel, es), end-b)
			}
		}
		out[name] = stTensor{dtype: e.Dtype, shape: e.Shape, begin: dataStart + b, end: dataStart + end}
	}
	return out, nil
}

func satMul(a, b int64) int64 {
	if b != 0 && a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

func (s *safetensors) Close() error { return s.f.Close() }

// readAll returns the bytes of t. It fails if the file has shrunk since the
// header was read.
func (s *safetensors) readAll(name string, t stTensor) ([]byte, error) {
	buf := make([]byte, t.end-t.begin)
	if _, err := s.f.ReadAt(buf, t.begin); err != nil {
		return nil, fmt.Errorf("bertonnx: read tensor %s: %w", name, err)
	}
	return buf, nil
}

// copyTo writes the bytes of t to w.
func (s *safetensors) copyTo(w io.Writer, name string, t stTensor) error {
	n := t.end - t.begin
	got, err := io.Copy(w, io.NewSectionReader(s.f, t.begin, n))
	if err != nil {
		return fmt.Errorf("bertonnx: copy tensor %s: %w", name, err)
	}
	if got != n {
		return fmt.Errorf("bertonnx: copy tensor %s: %w after %d of %d bytes", name, io.ErrUnexpectedEOF, got, n)
	}
	return nil
}
