package window

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// The encoding of a Series, version 1, little-endian:
//
//	offset  size  field
//	0       4     magic "ewin"
//	4       1     version (1)
//	5       8     watermark, int64 unix ns (math.MinInt64: none)
//	13      8     retained horizon, int64 unix ns (math.MinInt64: none)
//	21      8     largest Seq, uint64
//	29      4     n, the number of points, uint32, at most MaxPointsLimit
//	33      24n   points in (TS, Seq) order: TS int64, Seq uint64, V float64 bits
//	33+24n  4     CRC-32C (Castagnoli) of all the bytes before it
//
// The limits (lateness, horizon, MaxPoints) are not encoded: the receiving
// Series applies its own, so a replica with a smaller MaxPoints or Horizon
// trims on load. The retained horizon is encoded, so reads never reach
// past what the writer had trimmed.
const (
	encVersion    = 1
	encHeaderSize = 33
	encTrailer    = 4
	encMagic      = "ewin"
)

// EncodedSize returns the length of s's encoding: 37 + PointBytes*Len().
func (s *Series) EncodedSize() int { return encHeaderSize + PointBytes*s.Len() + encTrailer }

// MarshalBinary encodes s (see AppendBinary).
func (s *Series) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, s.EncodedSize()))
}

// AppendBinary appends the versioned encoding of s to b: the watermark, the
// retained horizon, the largest Seq and the points, with a checksum. It
// never fails.
func (s *Series) AppendBinary(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, encMagic...)
	b = append(b, encVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.wm()))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.retained()))
	b = binary.LittleEndian.AppendUint64(b, s.maxSeq)
	b = binary.LittleEndian.AppendUint32(b, uint32(s.Len()))
	for _, p := range s.buf[s.off:] {
		b = binary.LittleEndian.AppendUint64(b, uint64(p.TS))
		b = binary.LittleEndian.AppendUint64(b, p.Seq)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(p.V))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], crc32.MakeTable(crc32.Castagnoli))), nil
}

// UnmarshalBinary replaces the state of s with the encoded one, then
// applies s's own limits (a zero Series takes DefaultConfig's): it trims
// points older than the watermark minus Horizon and beyond MaxPoints. It
// fails with ErrCorrupt, naming the field or point, when data is not a
// version-1 encoding of a valid state: wrong magic, version or length, bad
// checksum, a time or value out of range, points out of (TS, Seq) order,
// before the retained horizon, after the watermark or with a Seq above the
// largest. A failed UnmarshalBinary changes nothing.
func (s *Series) UnmarshalBinary(data []byte) error {
	if len(data) < encHeaderSize+encTrailer {
		return fmt.Errorf("%w: %d bytes; want at least %d", ErrCorrupt, len(data), encHeaderSize+encTrailer)
	}
	if string(data[:4]) != encMagic {
		return fmt.Errorf("%w: magic %q; want %q", ErrCorrupt, data[:4], encMagic)
	}
	if data[4] != encVersion {
		return fmt.Errorf("%w: version %d; this build reads version %d", ErrCorrupt, data[4], encVersion)
	}
	le := binary.LittleEndian
	wm := int64(le.Uint64(data[5:]))
	from := int64(le.Uint64(data[13:]))
	maxSeq := le.Uint64(data[21:])
	n := le.Uint32(data[29:])
	if n > MaxPointsLimit {
		return fmt.Errorf("%w: %d points; limit %d", ErrCorrupt, n, MaxPointsLimit)
	}
	if want := encHeaderSize + PointBytes*int(n) + encTrailer; len(data) != want {
		return fmt.Errorf("%w: %d bytes; %d points need %d", ErrCorrupt, len(data), n, want)
	}
	body := data[:len(data)-encTrailer]
	if got, want := crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)), le.Uint32(data[len(body):]); got != want {
		return fmt.Errorf("%w: checksum %08x; encoded %08x", ErrCorrupt, got, want)
	}
	if wm != noTime && (wm < MinTS || wm > MaxTS) {
		return fmt.Errorf("%w: watermark %d ns is outside [%d, %d]", ErrCorrupt, wm, MinTS, MaxTS)
	}
	if lo := MinTS - int64(MaxDuration); from != noTime && (from < lo || from > MaxTS+1) {
		return fmt.Errorf("%w: retained horizon %d ns is outside [%d, %d]", ErrCorrupt, from, lo, MaxTS+1)
	}
	if n > 0 && wm == noTime {
		return fmt.Errorf("%w: %d points but no watermark", ErrCorrupt, n)
	}
	pointAt := func(i int) Point {
		b := body[encHeaderSize+PointBytes*i:]
		return Point{TS: int64(le.Uint64(b)), Seq: le.Uint64(b[8:]), V: math.Float64frombits(le.Uint64(b[16:]))}
	}
	for i := range int(n) {
		p := pointAt(i)
		if msg := checkPoint(p); msg != "" {
			return fmt.Errorf("%w: point %d: %s", ErrCorrupt, i, msg)
		}
		switch {
		case i > 0 && p.less(pointAt(i-1)):
			return fmt.Errorf("%w: point %d (ts %d, seq %d) sorts before point %d", ErrCorrupt, i, p.TS, p.Seq, i-1)
		case p.TS < from:
			return fmt.Errorf("%w: point %d at %s is before the retained horizon %s", ErrCorrupt, i, fmtTS(p.TS), fmtTS(from))
		case p.TS > wm:
			return fmt.Errorf("%w: point %d at %s is after the watermark %s", ErrCorrupt, i, fmtTS(p.TS), fmtTS(wm))
		case p.Seq > maxSeq:
			return fmt.Errorf("%w: point %d has seq %d above the largest seq %d", ErrCorrupt, i, p.Seq, maxSeq)
		case i == int(n)-1 && p.TS != wm:
			// Trimming never drops the newest points without dropping all.
			return fmt.Errorf("%w: newest point at %s is not at the watermark %s", ErrCorrupt, fmtTS(p.TS), fmtTS(wm))
		}
	}

	s.init()
	buf := s.buf[:0]
	if cap(buf) < int(n) || cap(buf) > s.capLimit() {
		buf = make([]Point, 0, n)
	}
	for i := range int(n) {
		buf = append(buf, pointAt(i))
	}
	s.buf, s.off = buf, 0
	s.watermark, s.from, s.maxSeq = wm, from, maxSeq
	if wm != noTime {
		s.trim(wm - s.horizon)
	}
	if cap(s.buf) > s.capLimit() { // more points than this Series keeps
		s.buf, s.off = append([]Point(nil), s.buf[s.off:]...), 0
	}
	return nil
}
