package service

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/window"
)

// State is everything the service keeps about one entity: a window series
// per aggregated source (EventsSource counts events), the latest session
// features, the latest external values and the arrival counter that orders
// ties.
type State struct {
	Series map[string]*window.Series
	// Seq counts the entity's accepted events; each event's points carry
	// its Seq, so ties at one timestamp are ordered by arrival.
	Seq uint64
	// Session holds the session features of the entity's latest event (by
	// event time) and LastActivity its time (unix nanos, 0: none).
	Session      []features.Value
	SessionID    string
	LastActivity int64
	// External holds the latest value per external feature source.
	External map[string]External
	// Applied records the ids of the events applied, sorted by (TS, ID),
	// and IDFloor the time at or before which ids were forgotten for the
	// count bound (-1: none); see dedupe.go.
	Applied []AppliedID
	IDFloor int64
	// ids indexes Applied by id; built on first use, nil until then.
	ids map[string]struct{}
	// Rev is the store's revision of this state when it was loaded ("" for
	// stores without revisions); not encoded.
	Rev string
}

// External is the latest value of an external source.
type External struct {
	V  float64
	TS int64 // unix nanos
}

// EventsSource is the series name that counts events (source "events").
const EventsSource = "events"

// Encoding versions: 1 has no applied ids; 2 adds them. A state without
// applied ids (and no floor) is written as version 1, so that a replica
// that predates ids still reads it.
const (
	stateMagic     = "efst"
	stateVersionV1 = 1
	stateVersion   = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt reports an undecodable state.
var errCorrupt = errors.New("features: corrupt entity state")

// newState returns an empty state.
func newState() *State {
	return &State{Series: map[string]*window.Series{}, External: map[string]External{}, IDFloor: -1}
}

// series returns the series of src, creating it with cfg.
func (s *State) series(src string, cfg window.Config) (*window.Series, error) {
	if ser := s.Series[src]; ser != nil {
		return ser, nil
	}
	ser, err := window.NewSeries(cfg)
	if err != nil {
		return nil, err
	}
	s.Series[src] = ser
	return ser, nil
}

// lastEventAtOrBefore returns the time of the latest event at or before t
// (unix nanos) and whether there is one.
func (s *State) lastEventAtOrBefore(t int64) (int64, bool) {
	ser := s.Series[EventsSource]
	if ser == nil {
		return 0, false
	}
	if wm, ok := ser.Watermark(); ok && wm <= t {
		return wm, true
	}
	pts := ser.Points(nil)
	i, _ := slices.BinarySearchFunc(pts, t+1, func(p window.Point, t int64) int {
		if p.TS < t {
			return -1
		}
		return 1
	})
	if i == 0 {
		return 0, false
	}
	return pts[i-1].TS, true
}

// Encoding (little-endian):
//
//	magic "efst", version u8, seq u64, lastActivity i64,
//	sessionID (u16 len + bytes), session values u16 n × value,
//	external u16 n × (name, f64, i64), series u16 n × (name, u32 len, bytes),
//	[version 2: id floor i64, applied u32 n × (id, ts i64), sorted by (ts, id)],
//	crc32c u32 of everything before.
//
// value: name (u16 len + bytes), version u32, null u8, f64, ts i64.

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// MarshalBinary encodes the state.
func (s *State) MarshalBinary() ([]byte, error) {
	size := 64
	for _, ser := range s.Series {
		size += 64 + ser.EncodedSize()
	}
	for _, a := range s.Applied {
		size += 10 + len(a.ID)
	}
	version := byte(stateVersion)
	if len(s.Applied) == 0 && s.IDFloor < 0 {
		version = stateVersionV1
	}
	b := make([]byte, 0, size)
	b = append(b, stateMagic...)
	b = append(b, version)
	b = binary.LittleEndian.AppendUint64(b, s.Seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.LastActivity))
	b = appendString(b, s.SessionID)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s.Session)))
	for _, v := range s.Session {
		b = appendString(b, v.Name)
		b = binary.LittleEndian.AppendUint32(b, uint32(v.Version))
		null := byte(0)
		if v.Null {
			null = 1
		}
		b = append(b, null)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Value))
		b = binary.LittleEndian.AppendUint64(b, uint64(v.Timestamp.UnixNano()))
	}
	names := slices.Sorted(maps.Keys(s.External))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(names)))
	for _, n := range names {
		e := s.External[n]
		b = appendString(b, n)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.V))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.TS))
	}
	names = slices.Sorted(maps.Keys(s.Series))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(names)))
	for _, n := range names {
		b = appendString(b, n)
		at := len(b)
		b = append(b, 0, 0, 0, 0)
		var err error
		if b, err = s.Series[n].AppendBinary(b); err != nil {
			return nil, err
		}
		binary.LittleEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	}
	if version == stateVersion {
		b = binary.LittleEndian.AppendUint64(b, uint64(s.IDFloor))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Applied)))
		for _, a := range s.Applied {
			b = appendString(b, a.ID)
			b = binary.LittleEndian.AppendUint64(b, uint64(a.TS))
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n > len(r.b) {
		r.err = errCorrupt
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u16() int {
	if p := r.take(2); p != nil {
		return int(binary.LittleEndian.Uint16(p))
	}
	return 0
}
func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}
func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}
func (r *reader) str() string { return string(r.take(r.u16())) }

// unmarshalState decodes data; each series gets cfg's limits.
func unmarshalState(data []byte, cfg window.Config) (*State, error) {
	if len(data) < len(stateMagic)+1+4 || string(data[:4]) != stateMagic {
		return nil, fmt.Errorf("%w: bad header", errCorrupt)
	}
	body := data[:len(data)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(data[len(data)-4:]) {
		return nil, fmt.Errorf("%w: CRC mismatch", errCorrupt)
	}
	version := body[4]
	if version != stateVersionV1 && version != stateVersion {
		return nil, fmt.Errorf("%w: version %d", errCorrupt, version)
	}
	r := &reader{b: body[5:]}
	s := newState()
	s.Seq = r.u64()
	s.LastActivity = int64(r.u64())
	s.SessionID = r.str()
	// The counts are claims: each loop stops at the first short read.
	for i, count := 0, r.u16(); i < count && r.err == nil; i++ {
		v := features.Value{Name: r.str(), Version: int(r.u32())}
		nb := r.take(1)
		v.Null = len(nb) == 1 && nb[0] == 1
		v.Value = math.Float64frombits(r.u64())
		v.Timestamp = time.Unix(0, int64(r.u64())).UTC()
		s.Session = append(s.Session, v)
	}
	for i, count := 0, r.u16(); i < count && r.err == nil; i++ {
		n := r.str()
		s.External[n] = External{V: math.Float64frombits(r.u64()), TS: int64(r.u64())}
	}
	for i, count := 0, r.u16(); i < count && r.err == nil; i++ {
		n := r.str()
		p := r.take(int(r.u32()))
		if r.err != nil {
			break
		}
		ser, err := window.NewSeries(cfg)
		if err != nil {
			return nil, err
		}
		if err := ser.UnmarshalBinary(p); err != nil {
			return nil, fmt.Errorf("%w: series %q: %v", errCorrupt, n, err)
		}
		s.Series[n] = ser
	}
	if version == stateVersion && r.err == nil {
		if err := s.decodeApplied(r); err != nil {
			return nil, err
		}
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, fmt.Errorf("%w: truncated or trailing bytes", errCorrupt)
	}
	return s, nil
}
