package framelog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	payloads := [][]byte{[]byte("first"), {}, bytes.Repeat([]byte{7}, 1000)}
	var log []byte
	for _, p := range payloads {
		log = Append(log, p)
	}
	sealed := make([]byte, HeaderSize, HeaderSize+5)
	sealed = append(sealed, "first"...)
	Seal(sealed)
	if !bytes.Equal(sealed, log[:HeaderSize+5]) {
		t.Errorf("Seal: got %x; want %x", sealed, log[:HeaderSize+5])
	}
	r := NewReader(bytes.NewReader(log), int64(len(log)), 1<<20)
	for i, want := range payloads {
		p, err := r.Next()
		if err != nil || !bytes.Equal(p, want) {
			t.Fatalf("frame %d: got %q, %v; want %q, nil", i, p, err, want)
		}
		if got := binary.LittleEndian.Uint32(r.Header()); got != uint32(len(want)) {
			t.Errorf("frame %d header length: got %d; want %d", i, got, len(want))
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("at the end: got %v; want io.EOF", err)
	}
	if r.Offset() != int64(len(log)) {
		t.Errorf("offset: got %d; want %d", r.Offset(), len(log))
	}
}

func TestBadTails(t *testing.T) {
	good := Append(nil, []byte("good"))
	last := Append(nil, []byte("last frame"))
	flipped := bytes.Clone(last)
	flipped[len(flipped)-1] ^= 1
	huge := binary.LittleEndian.AppendUint32(nil, 1<<30)
	huge = append(huge, 0, 0, 0, 0, 1, 2, 3)
	tests := []struct {
		name string
		tail []byte
		want error
	}{
		{"torn header", last[:5], ErrTorn},
		{"torn payload", last[:len(last)-1], ErrTorn},
		{"crc mismatch", flipped, ErrCorrupt},
		{"length over the limit", huge, ErrCorrupt},
		{"length past the end", Append(nil, make([]byte, 100))[:20], ErrTorn},
	}
	for _, tc := range tests {
		log := append(bytes.Clone(good), tc.tail...)
		r := NewReader(bytes.NewReader(log), int64(len(log)), 1<<20)
		if _, err := r.Next(); err != nil {
			t.Fatalf("%s: first frame: %v", tc.name, err)
		}
		_, err := r.Next()
		if !errors.Is(err, tc.want) || errors.Is(err, io.EOF) {
			t.Errorf("%s: got %v; want %v", tc.name, err, tc.want)
		}
		if r.Offset() != int64(len(good)) {
			t.Errorf("%s: offset %d; want %d", tc.name, r.Offset(), len(good))
		}
	}
	if !errors.Is(ErrTorn, io.ErrUnexpectedEOF) {
		t.Errorf("ErrTorn does not wrap io.ErrUnexpectedEOF")
	}
}
