package window

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzUnmarshalBinary feeds arbitrary bytes to UnmarshalBinary, as read and
// as resealed with a correct checksum so that the fuzzer reaches the state
// checks. Whatever decodes must satisfy the Series invariants, re-encode to
// a fixed point and answer reads without panicking.
//
//	go test -run '^$' -fuzz FuzzUnmarshalBinary ./internal/features/window/
func FuzzUnmarshalBinary(f *testing.F) {
	for _, s := range []*Series{{}, mustSeries(f, DefaultConfig()), sampleSeries(f)} {
		b, err := s.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte("ewin"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inputs := [][]byte{data}
		if len(data) >= 4 {
			inputs = append(inputs, reseal(append([]byte(nil), data...)))
		}
		for _, in := range inputs {
			cfg := DefaultConfig()
			cfg.MaxPoints = 64 // also exercises trimming on load
			s := mustSeries(t, cfg)
			if err := s.UnmarshalBinary(in); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error %v is not ErrCorrupt", err)
				}
				if s.Len() != 0 {
					t.Fatal("a failed UnmarshalBinary changed the series")
				}
				continue
			}
			if err := checkInvariants(s); err != nil {
				t.Fatalf("decoded state: %v", err)
			}
			b, _ := s.MarshalBinary()
			s2 := mustSeries(t, cfg)
			if err := s2.UnmarshalBinary(b); err != nil {
				t.Fatalf("re-decoding: %v", err)
			}
			if b2, _ := s2.MarshalBinary(); !bytes.Equal(b, b2) {
				t.Fatalf("not a fixed point:\n%x\n%x", b, b2)
			}
			if wm, ok := s.Watermark(); ok {
				for _, w := range cfg.Windows {
					a, err := s.Aggregate(wm, w)
					if err != nil && !errors.Is(err, ErrBeyondHorizon) {
						t.Fatalf("Aggregate(%d, %v): %v", wm, w, err)
					}
					if err == nil && a.Count > s.Len() {
						t.Fatalf("Count %d > Len %d", a.Count, s.Len())
					}
				}
				_ = s.Insert(Point{TS: wm, Seq: s.MaxSeq(), V: 1})
				_ = s.Trim(wm + int64(time.Hour))
				if err := checkInvariants(s); err != nil {
					t.Fatalf("after Insert and Trim: %v", err)
				}
			}
		}
	})
}
