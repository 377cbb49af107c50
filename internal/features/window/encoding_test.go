package window

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"strings"
	"testing"
	"time"
)

var (
	_ encoding.BinaryMarshaler   = (*Series)(nil)
	_ encoding.BinaryUnmarshaler = (*Series)(nil)
	_ encoding.BinaryAppender    = (*Series)(nil)
)

// sampleSeries has ties, a late insert and a trimmed horizon.
func sampleSeries(t testing.TB) *Series {
	s := mustSeries(t, DefaultConfig())
	mustInsert(t, s,
		Point{TS: t0, Seq: 1, V: 1.5},
		Point{TS: at(time.Minute), Seq: 2, V: -2},
		Point{TS: at(time.Minute), Seq: 3, V: 4},
		Point{TS: at(30 * time.Second), Seq: 4, V: 8},
		Point{TS: at(2 * time.Hour), Seq: 5, V: 16},
		Point{TS: at(2*time.Hour - time.Minute), Seq: 6, V: 32},
	)
	return s
}

// TestEncodingLayout pins the version-1 layout byte by byte.
func TestEncodingLayout(t *testing.T) {
	s := mustSeries(t, DefaultConfig())
	mustInsert(t, s, Point{TS: 1_000, Seq: 7, V: 0.5})
	got, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	var want []byte
	want = append(want, "ewin"...)
	want = append(want, 1)
	want = le.AppendUint64(want, 1_000) // watermark
	horizon := int64(1_000) - int64(65*time.Minute)
	want = le.AppendUint64(want, uint64(horizon)) // retained horizon
	want = le.AppendUint64(want, 7)               // max seq
	want = le.AppendUint32(want, 1)               // points
	want = le.AppendUint64(want, 1_000)
	want = le.AppendUint64(want, 7)
	want = le.AppendUint64(want, 0x3FE0000000000000) // 0.5
	want = le.AppendUint32(want, crc32.Checksum(want, crc32.MakeTable(crc32.Castagnoli)))
	if !bytes.Equal(got, want) {
		t.Errorf("encoding:\ngot  %x\nwant %x", got, want)
	}
	if len(got) != s.EncodedSize() || len(got) != 37+PointBytes {
		t.Errorf("length %d; EncodedSize %d; want %d", len(got), s.EncodedSize(), 37+PointBytes)
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *Series
	}{
		{"zero", &Series{}},
		{"empty", mustSeries(t, DefaultConfig())},
		{"sample", sampleSeries(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.s.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			got := mustSeries(t, DefaultConfig())
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			assertSameState(t, got, tc.s)
			b2, _ := got.MarshalBinary()
			if !bytes.Equal(b, b2) {
				t.Errorf("re-encoding differs:\n%x\n%x", b2, b)
			}
			// Both continue alike.
			p := Point{TS: at(2*time.Hour + time.Second), Seq: 99, V: 3}
			if err1, err2 := tc.s.Insert(p), got.Insert(p); (err1 == nil) != (err2 == nil) {
				t.Fatalf("Insert after resume: %v vs %v", err2, err1)
			}
			for _, w := range DefaultConfig().Windows {
				a1, err1 := tc.s.Aggregate(p.TS, w)
				a2, err2 := got.Aggregate(p.TS, w)
				if a1 != a2 || (err1 == nil) != (err2 == nil) {
					t.Errorf("Aggregate(%v) after resume: got %+v, %v; want %+v, %v", w, a2, err2, a1, err1)
				}
			}
		})
	}
	// AppendBinary appends.
	s := sampleSeries(t)
	b, _ := s.AppendBinary([]byte("prefix"))
	if string(b[:6]) != "prefix" {
		t.Errorf("AppendBinary overwrote the prefix: %q", b[:6])
	}
	if err := new(Series).UnmarshalBinary(b[6:]); err != nil {
		t.Errorf("UnmarshalBinary(AppendBinary): %v", err)
	}
}

func assertSameState(t *testing.T, got, want *Series) {
	t.Helper()
	gp, wp := got.Points(nil), want.Points(nil)
	if len(gp) != len(wp) {
		t.Fatalf("points: got %d; want %d", len(gp), len(wp))
	}
	for i := range gp {
		if gp[i] != wp[i] {
			t.Errorf("point %d: got %+v; want %+v", i, gp[i], wp[i])
		}
	}
	gw, gok := got.Watermark()
	ww, wok := want.Watermark()
	gf, gfok := got.RetainedFrom()
	wf, wfok := want.RetainedFrom()
	if gw != ww || gok != wok || gf != wf || gfok != wfok || got.MaxSeq() != want.MaxSeq() {
		t.Errorf("state: got watermark %d %v, horizon %d %v, max seq %d; want %d %v, %d %v, %d",
			gw, gok, gf, gfok, got.MaxSeq(), ww, wok, wf, wfok, want.MaxSeq())
	}
}

// TestDecodeAppliesReceiverLimits checks that a replica with a smaller
// MaxPoints trims on load and moves the horizon.
func TestDecodeAppliesReceiverLimits(t *testing.T) {
	b, _ := sampleSeries(t).MarshalBinary() // 2 points at t0+1h59m, t0+2h
	cfg := DefaultConfig()
	cfg.MaxPoints = 1
	s := mustSeries(t, cfg)
	if err := s.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got := s.Points(nil); len(got) != 1 || got[0].Seq != 5 {
		t.Errorf("points: got %+v; want seq 5 only", got)
	}
	if from, _ := s.RetainedFrom(); from != at(2*time.Hour-time.Minute)+1 {
		t.Errorf("RetainedFrom: got %s; want just after t0+1h59m", fmtTS(from))
	}
	if err := checkInvariants(s); err != nil {
		t.Error(err)
	}
}

// reseal replaces the checksum of b after an edit.
func reseal(b []byte) []byte {
	n := len(b) - 4
	binary.LittleEndian.PutUint32(b[n:], crc32.Checksum(b[:n], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func TestDecodeRejectsCorrupt(t *testing.T) {
	valid, _ := sampleSeries(t).MarshalBinary() // 2 points
	le := binary.LittleEndian
	none := noTime
	pt := func(i int) int { return 33 + PointBytes*i } // offset of point i
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), valid...)) }
	tests := []struct {
		name string
		data []byte
		want string // in the error
	}{
		{"nil", nil, "want at least 37"},
		{"short", valid[:36], "want at least 37"},
		{"magic", edit(func(b []byte) []byte { b[0] = 'x'; return reseal(b) }), "magic"},
		{"version", edit(func(b []byte) []byte { b[4] = 2; return reseal(b) }), "version 2"},
		{"truncated", reseal(append([]byte(nil), valid[:len(valid)-PointBytes]...)), "2 points need 85"},
		{"extra byte", reseal(append(append([]byte(nil), valid...), 0)), "2 points need 85"},
		{"count too large", edit(func(b []byte) []byte { le.PutUint32(b[29:], MaxPointsLimit+1); return reseal(b) }), "limit 1048576"},
		{"bit flip", edit(func(b []byte) []byte { b[pt(1)+20] ^= 1; return b }), "checksum"},
		{"checksum", edit(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }), "checksum"},
		{"watermark out of range", edit(func(b []byte) []byte { le.PutUint64(b[5:], uint64(MaxTS+1)); return reseal(b) }), "watermark"},
		{"horizon out of range", edit(func(b []byte) []byte { le.PutUint64(b[13:], uint64(MaxTS+2)); return reseal(b) }), "retained horizon"},
		{"points without watermark", edit(func(b []byte) []byte { le.PutUint64(b[5:], uint64(none)); return reseal(b) }), "no watermark"},
		{"NaN value", edit(func(b []byte) []byte { le.PutUint64(b[pt(0)+16:], math.Float64bits(math.NaN())); return reseal(b) }), "value NaN"},
		{"value too large", edit(func(b []byte) []byte { le.PutUint64(b[pt(0)+16:], math.Float64bits(1e101)); return reseal(b) }), "value 1e+101"},
		// Point 0 is (t0+1h59m, seq 6), point 1 (t0+2h, seq 5).
		{"out of order", edit(func(b []byte) []byte { le.PutUint64(b[pt(0):], uint64(at(2*time.Hour))); return reseal(b) }), "sorts before point 0"},
		{"before horizon", edit(func(b []byte) []byte { le.PutUint64(b[13:], uint64(at(2*time.Hour))); return reseal(b) }), "before the retained horizon"},
		{"after watermark", edit(func(b []byte) []byte { le.PutUint64(b[5:], uint64(at(time.Hour))); return reseal(b) }), "after the watermark"},
		{"seq above max", edit(func(b []byte) []byte { le.PutUint64(b[21:], 5); return reseal(b) }), "above the largest seq"},
		{"newest not at watermark", edit(func(b []byte) []byte { le.PutUint64(b[5:], uint64(at(3*time.Hour))); return reseal(b) }), "not at the watermark"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sampleSeries(t)
			before, _ := s.MarshalBinary()
			err := s.UnmarshalBinary(tt.data)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v; want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if after, _ := s.MarshalBinary(); !bytes.Equal(after, before) {
				t.Error("a failed UnmarshalBinary changed the series")
			}
		})
	}
}
