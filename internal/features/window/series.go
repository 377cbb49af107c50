package window

import (
	"fmt"
	"math"
	"time"
)

// Point is one observation of a value: its event time, its arrival order
// and the value. Points are ordered by (TS, Seq).
type Point struct {
	TS  int64   // event time, unix nanoseconds, in [MinTS, MaxTS]
	Seq uint64  // arrival order; among equal TS the greatest Seq arrived last
	V   float64 // finite, |V| <= MaxAbsValue
}

// less orders points by (TS, Seq).
func (p Point) less(q Point) bool {
	return p.TS < q.TS || (p.TS == q.TS && p.Seq < q.Seq)
}

// Series is the retained points of one value of one entity, sorted by
// (TS, Seq); see the package documentation for its invariants and memory
// bound. Create it with NewSeries; the zero Series behaves as one made
// with DefaultConfig.
//
// A Series is not safe for concurrent use, except that methods that do not
// modify it (Aggregate, Len, Watermark, RetainedFrom, MaxSeq, Points,
// MarshalBinary) may run concurrently with each other.
type Series struct {
	lateness  int64 // AllowedLateness in ns
	horizon   int64 // Horizon in ns; 0 until limits are set
	maxPoints int

	// buf[off:] are the points, sorted by (TS, Seq). Trimming advances off;
	// the gap is reclaimed when buf is full (see reserve), so cap(buf) stays
	// within capLimit.
	buf []Point
	off int

	watermark int64  // largest TS accepted; noTime before the first
	from      int64  // retained horizon: every accepted point with TS >= from is in buf; noTime: all are
	maxSeq    uint64 // largest Seq accepted
}

// NewSeries returns an empty series with cfg's lateness, horizon and point
// bound (cfg.Windows only sets the default horizon).
func NewSeries(cfg Config) (*Series, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Series{watermark: noTime, from: noTime}
	s.setLimits(cfg.WithDefaults())
	return s, nil
}

func (s *Series) setLimits(c Config) {
	s.lateness = int64(c.AllowedLateness)
	s.horizon = int64(c.Horizon)
	s.maxPoints = c.MaxPoints
}

// init gives a zero Series the default limits and empty state. A Series
// with limits (horizon > 0) has been initialized; every mutating method
// calls init first, so an uninitialized one holds nothing.
func (s *Series) init() {
	if s.horizon == 0 {
		s.setLimits(DefaultConfig())
		s.watermark, s.from = noTime, noTime
	}
}

// wm and retained return the watermark and the retained horizon, noTime
// for an uninitialized zero Series.
func (s *Series) wm() int64 {
	if s.horizon == 0 {
		return noTime
	}
	return s.watermark
}

func (s *Series) retained() int64 {
	if s.horizon == 0 {
		return noTime
	}
	return s.from
}

// capLimit is the largest capacity buf may have.
func (s *Series) capLimit() int { return s.maxPoints + s.maxPoints/4 + 1 }

// Len returns the number of retained points.
func (s *Series) Len() int { return len(s.buf) - s.off }

// Watermark returns the largest event time accepted, and false before the
// first.
func (s *Series) Watermark() (int64, bool) {
	w := s.wm()
	return w, w != noTime
}

// RetainedFrom returns the retained horizon: every accepted point with
// TS >= it is still held, and reads whose window starts earlier fail with
// ErrBeyondHorizon. False means nothing has been trimmed yet.
func (s *Series) RetainedFrom() (int64, bool) {
	f := s.retained()
	return f, f != noTime
}

// MaxSeq returns the largest Seq accepted (0 before the first), so a
// caller resuming a persisted series can continue its arrival counter.
func (s *Series) MaxSeq() uint64 { return s.maxSeq }

// Points appends the retained points, in (TS, Seq) order, to dst.
func (s *Series) Points(dst []Point) []Point { return append(dst, s.buf[s.off:]...) }

// checkPoint describes what is wrong with p's time or value, or returns "".
func checkPoint(p Point) string {
	if p.TS < MinTS || p.TS > MaxTS {
		return fmt.Sprintf("event time %d ns is outside [%d, %d]", p.TS, MinTS, MaxTS)
	}
	if !(math.Abs(p.V) <= MaxAbsValue) { // also NaN
		return fmt.Sprintf("event at %s (seq %d) has value %v; want finite with magnitude <= %g",
			fmtTS(p.TS), p.Seq, p.V, MaxAbsValue)
	}
	return ""
}

// Insert adds p in (TS, Seq) order; a point equal in both goes after the
// existing ones. It fails with ErrTooLate when p.TS is before the watermark
// minus AllowedLateness or before RetainedFrom, and with ErrInvalid for a
// time outside [MinTS, MaxTS] or a value that is not finite or exceeds
// MaxAbsValue; a failed Insert changes nothing.
//
// After inserting, points older than the watermark minus Horizon are
// trimmed, then the oldest points beyond MaxPoints. A late p older than
// every retained point of a full series is thus accepted and trimmed at
// once: the retained horizon moves past it, and reads that would cover it
// fail with ErrBeyondHorizon instead of leaving it out.
func (s *Series) Insert(p Point) error {
	s.init()
	if msg := checkPoint(p); msg != "" {
		return fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	if s.watermark != noTime && p.TS < s.watermark-s.lateness {
		return fmt.Errorf("%w: event at %s (seq %d) is %v behind watermark %s; allowed lateness %v",
			ErrTooLate, fmtTS(p.TS), p.Seq, time.Duration(s.watermark-p.TS), fmtTS(s.watermark), time.Duration(s.lateness))
	}
	if s.from != noTime && p.TS < s.from {
		return fmt.Errorf("%w: event at %s (seq %d) is before the retained horizon %s",
			ErrTooLate, fmtTS(p.TS), p.Seq, fmtTS(s.from))
	}
	n := s.Len()
	if n == 0 || !p.less(s.buf[len(s.buf)-1]) {
		s.reserve()
		s.buf = append(s.buf, p)
	} else {
		pts := s.buf[s.off:]
		// First index whose point sorts after p; p goes there.
		lo, hi := 0, n
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if p.less(pts[m]) {
				hi = m
			} else {
				lo = m + 1
			}
		}
		s.reserve()
		i := s.off + lo
		s.buf = append(s.buf, Point{})
		copy(s.buf[i+1:], s.buf[i:])
		s.buf[i] = p
	}
	s.watermark = max(s.watermark, p.TS)
	s.maxSeq = max(s.maxSeq, p.Seq)
	s.trim(s.watermark - s.horizon)
	return nil
}

// Trim drops the points older than max(watermark, now) minus Horizon and
// moves the retained horizon there, releasing the memory of an idle
// entity; reads at as_of near now are unaffected. now is unix nanoseconds
// in [MinTS, MaxTS].
func (s *Series) Trim(now int64) error {
	if now < MinTS || now > MaxTS {
		return fmt.Errorf("%w: now %d ns is outside [%d, %d]", ErrInvalid, now, MinTS, MaxTS)
	}
	s.init()
	s.trim(max(s.watermark, now) - s.horizon)
	return nil
}

// trim raises the retained horizon to cutoff, drops the points before it,
// then enforces MaxPoints: it drops the oldest points, and with them every
// point tied in TS with the last one dropped, and raises the retained
// horizon past them, so that a read never sees part of a timestamp.
func (s *Series) trim(cutoff int64) {
	s.from = max(s.from, cutoff)
	s.dropBefore(s.from)
	if n := s.Len(); n > s.maxPoints {
		last := s.buf[s.off+n-s.maxPoints-1].TS // the newest point that must go; <= MaxTS
		s.from = max(s.from, last+1)
		s.dropBefore(s.from)
	}
	s.shrink()
}

// dropBefore drops the points with TS < t.
func (s *Series) dropBefore(t int64) {
	pts := s.buf[s.off:]
	if len(pts) == 0 || pts[0].TS >= t {
		return
	}
	s.off += searchTS(pts, t)
}

// searchTS returns the first index of pts with TS >= t (len(pts) if none).
func searchTS(pts []Point, t int64) int {
	lo, hi := 0, len(pts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if pts[m].TS < t {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// shrink releases buf when empty and halves its capacity when it is less
// than a quarter full, so an entity that goes quiet gives memory back.
func (s *Series) shrink() {
	n := s.Len()
	switch {
	case n == 0:
		s.buf, s.off = nil, 0
	case cap(s.buf) > 64 && n < cap(s.buf)/4:
		nb := make([]Point, n, 2*n)
		copy(nb, s.buf[s.off:])
		s.buf, s.off = nb, 0
	}
}

// reserve makes room for one more point at the end of buf. It reclaims the
// trimmed gap before buf[off] when that gap is at least a quarter of the
// points or buf is at its largest capacity, and otherwise doubles the
// capacity up to capLimit. Reclaiming copies at most Len points once per
// Len/4 trimmed, so appends stay amortized O(1).
func (s *Series) reserve() {
	if len(s.buf) < cap(s.buf) {
		return
	}
	n := s.Len()
	limit := s.capLimit()
	if s.off > 0 && (s.off >= n/4 || cap(s.buf) >= limit) {
		copy(s.buf, s.buf[s.off:])
		s.buf, s.off = s.buf[:n], 0
		return
	}
	nb := make([]Point, n, max(min(max(2*cap(s.buf), 16), limit), n+1))
	copy(nb, s.buf[s.off:])
	s.buf, s.off = nb, 0
}
