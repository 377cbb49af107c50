package reembed

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Report is a job's progress after a checkpoint.
type Report struct {
	Shard    string
	Counters Counters
	// BytesDone of BytesTotal source bytes are behind the checkpoint
	// (Parquet rows count in proportion to the file's size).
	BytesDone, BytesTotal int64
	Elapsed               time.Duration
	// Rate is the records embedded per second by this run.
	Rate float64
}

// ETA estimates the time left from the bytes left at this run's pace
// (startBytes: the bytes done when it began); 0 when unknown.
func (r Report) ETA(startBytes int64) time.Duration {
	done := r.BytesDone - startBytes
	if done <= 0 || r.BytesTotal <= r.BytesDone {
		return 0
	}
	return time.Duration(float64(r.Elapsed) * float64(r.BytesTotal-r.BytesDone) / float64(done))
}

// Progress receives a Report after each checkpoint, from one goroutine.
type Progress interface {
	Update(Report)
}

type noProgress struct{}

func (noProgress) Update(Report) {}

// LogProgress logs a Report at most every Interval (structured lines, for
// logs that are not a terminal).
type LogProgress struct {
	Logger   *slog.Logger
	Interval time.Duration
	last     time.Time
	start    int64
	started  bool
}

// Update logs r if Interval has passed since the last line.
func (p *LogProgress) Update(r Report) {
	if !p.started {
		p.start, p.started = r.BytesDone, true
	}
	if time.Since(p.last) < p.Interval {
		return
	}
	p.last = time.Now()
	c := r.Counters
	pct := 0.0
	if r.BytesTotal > 0 {
		pct = 100 * float64(r.BytesDone) / float64(r.BytesTotal)
	}
	eta := "unknown"
	if d := r.ETA(p.start); d > 0 {
		eta = d.Round(time.Second).String()
	}
	p.Logger.Info("reembed: progress", "shard", r.Shard, "read", c.Read, "embedded", c.Embedded, "skipped", c.Skipped, "failed", c.Failed,
		"other_shards", c.OtherShards, "items_per_s", fmt.Sprintf("%.0f", r.Rate), "percent", fmt.Sprintf("%.1f", pct), "eta", eta)
}

// Bar draws a progress bar on a terminal: source bytes done, with records
// embedded and records/s in the description, and the ETA.
type Bar struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

// NewBar returns a Bar that draws on w.
func NewBar(w io.Writer) *Bar { return &Bar{w: w} }

// Update redraws the bar.
func (b *Bar) Update(r Report) {
	if b.bar == nil {
		b.bar = progressbar.NewOptions64(r.BytesTotal,
			progressbar.OptionSetWriter(b.w), progressbar.OptionSetPredictTime(true), progressbar.OptionShowBytes(true),
			progressbar.OptionSetElapsedTime(true), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetWidth(30),
			progressbar.OptionSetRenderBlankState(true))
	}
	c := r.Counters
	b.bar.Describe(fmt.Sprintf("shard %s: %d embedded, %d skipped, %d failed, %.0f items/s", r.Shard, c.Embedded, c.Skipped, c.Failed, r.Rate))
	b.bar.Set64(r.BytesDone)
}

// Close ends the bar's line.
func (b *Bar) Close() error {
	if b.bar == nil {
		return nil
	}
	return b.bar.Close()
}
