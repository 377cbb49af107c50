package window

import (
	"fmt"
	"time"
)

// Limits on every input. Timestamps are unix nanoseconds; the range keeps
// every sum of a timestamp and a duration below in int64.
const (
	// MinTS and MaxTS bound event and as_of times: about 1823-12 to 2116-02.
	MinTS int64 = -1 << 62
	MaxTS int64 = 1 << 62
	// MaxDuration bounds a window, AllowedLateness and Horizon.
	MaxDuration = 366 * 24 * time.Hour
	// MaxWindows bounds len(Config.Windows).
	MaxWindows = 16
	// MaxPointsLimit bounds Config.MaxPoints (and the points of an encoded
	// series): 1<<20 points are at most 30 MiB in memory.
	MaxPointsLimit = 1 << 20
	// MaxValueNameBytes bounds the name of a value in feature names.
	MaxValueNameBytes = 64
	// MaxAbsValue bounds |Point.V|, so that sums and sums of squares of
	// MaxPointsLimit values stay finite.
	MaxAbsValue = 1e100
)

// PointBytes is the size of a Point in memory and in the encoding.
const PointBytes = 24

// Config configures the windows of one value of an entity. The zero value
// is valid: a zero field takes its default, except AllowedLateness, where
// zero means none (only events at or after the watermark are accepted).
// Start from DefaultConfig. Negative values are rejected.
type Config struct {
	// Windows are the window lengths to compute. Default 1m, 5m, 1h. Each
	// is in (0, MaxDuration]; they are distinct; at most MaxWindows.
	Windows []time.Duration
	// AllowedLateness is how far behind the watermark (the largest event
	// time accepted so far) an event may be and still be placed in order;
	// older events fail with ErrTooLate. DefaultConfig sets 5m: it covers
	// client-side batching and consumer lag of a few minutes, and costs
	// only 5m of extra horizon (8% over the 1h window).
	AllowedLateness time.Duration
	// Horizon is how far behind the newest time (the watermark, or the now
	// given to Trim) points are kept; reads whose window starts earlier fail
	// with ErrBeyondHorizon. Default: the largest window plus
	// AllowedLateness, at least 1h (1h5m with the default windows). It must
	// be at least that sum, so that every window read at any as_of an
	// allowed late event can still affect is answered. At most MaxDuration.
	Horizon time.Duration
	// MaxPoints bounds the points kept per series. Default 10_000; at most
	// MaxPointsLimit. Past it the oldest points are trimmed and the retained
	// horizon moves forward, so reads of long windows fail with
	// ErrBeyondHorizon rather than undercount: size it for the peak event
	// rate times Horizon (the default holds 2.5 events/s over 1h5m). A
	// series holds at most MaxPoints+MaxPoints/4+1 points of capacity,
	// PointBytes each: 300 KB at the default.
	MaxPoints int
}

// DefaultConfig returns windows of 1m, 5m and 1h, a 5m allowed lateness, a
// 1h5m horizon and 10_000 points per series.
func DefaultConfig() Config {
	return Config{
		Windows:         []time.Duration{time.Minute, 5 * time.Minute, time.Hour},
		AllowedLateness: 5 * time.Minute,
		Horizon:         time.Hour + 5*time.Minute,
		MaxPoints:       10_000,
	}
}

// WithDefaults returns c with its zero fields filled (Windows is copied).
// It does not validate; negative fields stay negative.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if len(c.Windows) == 0 {
		c.Windows = d.Windows
	} else {
		c.Windows = append([]time.Duration(nil), c.Windows...)
	}
	if c.MaxPoints == 0 {
		c.MaxPoints = d.MaxPoints
	}
	if c.Horizon == 0 {
		c.Horizon = max(c.maxWindow()+c.AllowedLateness, time.Hour)
	}
	return c
}

// maxWindow is the largest of c.Windows (0 when empty).
func (c Config) maxWindow() time.Duration {
	var m time.Duration
	for _, w := range c.Windows {
		m = max(m, w)
	}
	return m
}

// Validate checks c with its defaults filled (WithDefaults). The error
// names the field, the index and the limit.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if len(c.Windows) > MaxWindows {
		return fmt.Errorf("%w: Windows has %d entries; want <= %d", ErrInvalidConfig, len(c.Windows), MaxWindows)
	}
	for i, w := range c.Windows {
		if w <= 0 || w > MaxDuration {
			return fmt.Errorf("%w: Windows[%d] is %v; want > 0 and <= %v", ErrInvalidConfig, i, w, MaxDuration)
		}
		for j := range i {
			if c.Windows[j] == w {
				return fmt.Errorf("%w: Windows[%d] is %v, same as Windows[%d]; want distinct windows", ErrInvalidConfig, i, w, j)
			}
		}
	}
	if c.AllowedLateness < 0 || c.AllowedLateness > MaxDuration {
		return fmt.Errorf("%w: AllowedLateness is %v; want >= 0 and <= %v", ErrInvalidConfig, c.AllowedLateness, MaxDuration)
	}
	if c.Horizon < 0 || c.Horizon > MaxDuration {
		return fmt.Errorf("%w: Horizon is %v; want > 0 and <= %v", ErrInvalidConfig, c.Horizon, MaxDuration)
	}
	if need := c.maxWindow() + c.AllowedLateness; c.Horizon < need {
		return fmt.Errorf("%w: Horizon is %v; want >= largest window %v + AllowedLateness %v = %v",
			ErrInvalidConfig, c.Horizon, c.maxWindow(), c.AllowedLateness, need)
	}
	if c.MaxPoints < 0 || c.MaxPoints > MaxPointsLimit {
		return fmt.Errorf("%w: MaxPoints is %d; want >= 1 and <= %d", ErrInvalidConfig, c.MaxPoints, MaxPointsLimit)
	}
	return nil
}
