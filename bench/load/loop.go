package main

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"
)

// embedFunc sends one text and returns the tokens the server counted for it.
type embedFunc func(ctx context.Context, text string) (tokens int, err error)

// errBadResponse marks a reply that succeeded at the gRPC level but is wrong
// (for example, not one embedding per text).
var errBadResponse = errors.New("load: bad response")

// Run modes.
const (
	modeClosed = "closed"
	modeOpen   = "open"
)

// Arrival processes of the open loop.
const (
	arrivalsPoisson = "poisson"
	arrivalsUniform = "uniform"
)

// runSpec describes one measured run.
type runSpec struct {
	Mode string
	// Concurrency is the number of closed-loop clients, each with one
	// request outstanding.
	Concurrency int
	// Rate is the open loop's arrival rate in requests per second.
	Rate float64
	// Arrivals is the open loop's arrival process: exponential gaps
	// (poisson) or constant gaps (uniform).
	Arrivals string
	// Seed makes the Poisson arrival times reproducible.
	Seed uint64
	// Start is when the warmup begins; zero means now.
	Start time.Time
	// Warmup is excluded from the measurement; Duration is measured.
	Warmup, Duration time.Duration
	// Timeout bounds each request, from the moment it is sent.
	Timeout time.Duration
	// MaxInFlight caps the open loop's outstanding requests; when reached,
	// sends wait, and the wait counts in their latency.
	MaxInFlight int
}

// runResult is the measurement of one run.
type runResult struct {
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
	Arrivals    string  `json:"arrivals,omitempty"`
	DurationS   float64 `json:"duration_s"`
	// Requests started (closed) or scheduled (open) inside the measured
	// window; OK of them succeeded, Errors counts the rest by gRPC code.
	Requests      int            `json:"requests"`
	OK            int            `json:"ok"`
	Errors        map[string]int `json:"errors,omitempty"`
	SentencesPerS float64        `json:"sentences_per_s"`
	TokensPerS    float64        `json:"tokens_per_s"`
	// MeanTokens is the mean tokens per text the server reported.
	MeanTokens float64 `json:"mean_tokens"`
	// LatencyMS covers successful requests: from send (closed loop) or from
	// the scheduled send time (open loop, so a late send counts against
	// the server as it would for a real client: no coordinated omission).
	LatencyMS latencySummary `json:"latency_ms"`
	// MaxSendLagMS is the open loop's worst delay between a scheduled and
	// an actual send; large values mean the generator could not keep up.
	MaxSendLagMS float64 `json:"max_send_lag_ms,omitempty"`
	// Batch is what the server's batch-size histogram recorded during the
	// measured window; BatchError says why it is missing.
	Batch      []batchStats `json:"batch,omitempty"`
	BatchError string       `json:"batch_error,omitempty"`
	// ModelRun is what the server's model-run histogram recorded during
	// the measured window (absent when it recorded nothing).
	ModelRun *runStats `json:"model_run,omitempty"`
}

// name is a short label of the run, e.g. "closed c=16" or "open 200/s".
func (r runResult) name() string {
	if r.Mode == modeOpen {
		return "open " + formatRate(r.Rate) + "/s"
	}
	return "closed c=" + itoa(r.Concurrency)
}

// recorder collects the outcomes of measured requests.
type recorder struct {
	mu     sync.Mutex // guards the fields below
	lat    []time.Duration
	tokens int64
	errs   map[string]int
	maxLag time.Duration
}

func (r *recorder) add(lat time.Duration, tokens int, err error, lag time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maxLag = max(r.maxLag, lag)
	if err != nil {
		if r.errs == nil {
			r.errs = map[string]int{}
		}
		r.errs[errorKey(err)]++
		return
	}
	r.lat = append(r.lat, lat)
	r.tokens += int64(tokens)
}

func (r *recorder) result(spec runSpec) runResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := runResult{
		Mode:         spec.Mode,
		DurationS:    spec.Duration.Seconds(),
		OK:           len(r.lat),
		Errors:       r.errs,
		MaxSendLagMS: float64(r.maxLag) / float64(time.Millisecond),
	}
	if spec.Mode == modeOpen {
		res.Rate, res.Arrivals = spec.Rate, spec.Arrivals
	} else {
		res.Concurrency = spec.Concurrency
	}
	res.Requests = res.OK
	for _, n := range r.errs {
		res.Requests += n
	}
	if s := spec.Duration.Seconds(); s > 0 {
		res.SentencesPerS = float64(res.OK) / s
		res.TokensPerS = float64(r.tokens) / s
	}
	if res.OK > 0 {
		res.MeanTokens = float64(r.tokens) / float64(res.OK)
	}
	res.LatencyMS = summarize(r.lat)
	return res
}

// errorKey names an error by its gRPC code.
func errorKey(err error) string {
	if errors.Is(err, errBadResponse) {
		return "BadResponse"
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	return status.FromContextError(err).Code().String() // Unknown unless a context error
}

func send(ctx context.Context, timeout time.Duration, embed embedFunc, text string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return embed(ctx, text)
}

func (spec runSpec) window() (start, from, end time.Time) {
	start = spec.Start
	if start.IsZero() {
		start = time.Now()
	}
	from = start.Add(spec.Warmup)
	return start, from, from.Add(spec.Duration)
}

// runClosed runs spec.Concurrency clients, each sending one request and
// waiting for its reply before sending the next, until the window ends. A
// request counts if it started inside the measured window. It stops early,
// counting nothing more, when ctx is done.
func runClosed(ctx context.Context, spec runSpec, texts []string, embed embedFunc) runResult {
	_, from, end := spec.window()
	var (
		next atomic.Uint64
		rec  recorder
		wg   sync.WaitGroup
	)
	for range spec.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				text := texts[(next.Add(1)-1)%uint64(len(texts))]
				tokens, err := send(ctx, spec.Timeout, embed, text)
				if ctx.Err() != nil {
					return
				}
				if !t0.Before(from) {
					rec.add(time.Since(t0), tokens, err, 0)
				}
			}
		})
	}
	wg.Wait()
	return rec.result(spec)
}

// runOpen sends requests at spec.Rate per second, whatever the replies do,
// until the window ends, then waits for the outstanding ones. Latency runs
// from each request's scheduled send time.
func runOpen(ctx context.Context, spec runSpec, texts []string, embed embedFunc) runResult {
	start, from, end := spec.window()
	gaps := newArrivals(spec.Arrivals, spec.Rate, spec.Seed)
	var (
		rec recorder
		wg  sync.WaitGroup
	)
	inFlight := make(chan struct{}, max(spec.MaxInFlight, 1))
	timer := time.NewTimer(0)
	defer timer.Stop()
schedule:
	for i, at := 0, start; at.Before(end); i, at = i+1, at.Add(gaps()) {
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break schedule
			}
		}
		select {
		case inFlight <- struct{}{}:
		case <-ctx.Done():
			break schedule
		}
		text := texts[i%len(texts)]
		wg.Go(func() {
			defer func() { <-inFlight }()
			sent := time.Now()
			tokens, err := send(ctx, spec.Timeout, embed, text)
			if ctx.Err() != nil || at.Before(from) {
				return
			}
			rec.add(time.Since(at), tokens, err, sent.Sub(at))
		})
	}
	wg.Wait()
	return rec.result(spec)
}

// newArrivals returns a function that yields the gaps between sends.
func newArrivals(process string, rate float64, seed uint64) func() time.Duration {
	mean := float64(time.Second) / rate
	if process == arrivalsUniform {
		return func() time.Duration { return time.Duration(mean) }
	}
	rng := splitmix64(seed)
	return func() time.Duration {
		u := (float64(rng.next()>>11) + 0.5) / (1 << 53) // uniform in (0, 1)
		return time.Duration(-math.Log(u) * mean)
	}
}
