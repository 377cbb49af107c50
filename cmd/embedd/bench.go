package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/models"
)

// benchRun is one measured (text set, batch size) cell of `embedd bench`.
type benchRun struct {
	Texts       string  `json:"texts"`
	Batch       int     `json:"batch"`
	Concurrency int     `json:"concurrency"`
	Calls       int     `json:"calls"`
	Sentences   int     `json:"sentences"`
	Tokens      int64   `json:"tokens"`
	MeanTokens  float64 `json:"mean_tokens"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"sentences_per_s"`
	TokensPerS  float64 `json:"tokens_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Errors      int     `json:"errors"`
}

type benchReport struct {
	Model      string     `json:"model"`
	Version    string     `json:"version"`
	Backend    string     `json:"backend"`
	Requested  string     `json:"requested"`
	Fallback   string     `json:"fallback"`
	MaxBatch   int        `json:"max_batch_size"`
	MaxTokens  int        `json:"max_batch_tokens"`
	Workers    int        `json:"workers"`
	Runs       []benchRun `json:"runs"`
	StartedUTC string     `json:"started_utc"`
	// Device events over the whole run (see engine.DeviceObserver).
	ModelRuns   int64 `json:"model_runs"`
	BatchErrors int64 `json:"batch_errors"`
	OOMSplits   int64 `json:"oom_splits"`
	CPURetries  int64 `json:"cpu_retries"`
}

// benchEvents counts model runs and device events; it is the batch
// observer of the benchmarked model.
type benchEvents struct {
	runs, errs, splits, cpu atomic.Int64
}

func (e *benchEvents) BatchRun(_, _, _ int, _, _ time.Duration, err error) {
	e.runs.Add(1)
	if err != nil {
		e.errs.Add(1)
	}
}
func (e *benchEvents) QueueDepth(int, int) {}
func (e *benchEvents) Dropped(error)       {}
func (e *benchEvents) OOMSplit()           { e.splits.Add(1) }
func (e *benchEvents) CPURetry()           { e.cpu.Add(1) }

// cmdBench measures the engine in process: no gRPC, no network. Each text
// file (JSON Lines of {"text": ...}, as `go run ./bench/load -dump-texts`
// writes) is embedded in calls of each batch size, by -concurrency callers
// in a closed loop, for -duration after -warmup.
func cmdBench(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	var c common
	fs := newFlagSet("bench", "TEXTS.jsonl...")
	c.register(fs)
	model := fs.String("model", models.Default, "model name")
	batches := fs.String("batch", "1,32,256", "texts per Embed call, comma-separated")
	conc := fs.Int("concurrency", 1, "callers at once")
	duration := fs.Duration("duration", 5*time.Second, "measured time per cell")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time before each cell")
	maxBatch := fs.Int("max-batch-size", 0, "most texts per model run; 0 = device default")
	maxTokens := fs.Int("max-batch-tokens", 0, "most padded tokens per model run; 0 = device default")
	workers := fs.Int("workers", 0, "model runs in parallel; 0 = device default")
	out := fs.String("out", "", "also write the JSON report to this file")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: bench needs at least one TEXTS.jsonl", errUsage)
	}
	var sizes []int
	for _, f := range strings.Split(*batches, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4096 {
			return fmt.Errorf("%w: --batch %q: want integers in [1, 4096]", errUsage, f)
		}
		sizes = append(sizes, n)
	}
	if *conc < 1 || *conc > 4096 || *duration <= 0 || *warmup < 0 {
		return fmt.Errorf("%w: --concurrency in [1, 4096], --duration > 0 and --warmup >= 0", errUsage)
	}
	sets := make(map[string][]string)
	var names []string
	for _, path := range fs.Args() {
		texts, err := readJSONLTexts(path)
		if err != nil {
			return err
		}
		names = append(names, path)
		sets[path] = texts
	}
	cat, opts, err := c.engineOptions(logger)
	if err != nil {
		return err
	}
	opts.MaxTexts = max(4096, slices.Max(sizes))
	opts.Batch.MaxBatchSize, opts.Batch.MaxBatchTokens, opts.Batch.Workers = *maxBatch, *maxTokens, *workers
	events := &benchEvents{}
	opts.Observer = func(string, string) batch.Observer { return events }
	eng := engine.New(cat, opts)
	defer eng.Close()
	m, err := eng.Load(ctx, *model)
	if err != nil {
		return err
	}
	d, bo := m.Device(), m.BatchOptions()
	rep := benchReport{
		Model: m.Manifest().Name, Version: m.Manifest().Version, Backend: m.Backend(),
		Requested: string(d.Requested), Fallback: d.Fallback,
		MaxBatch: bo.MaxBatchSize, MaxTokens: bo.MaxBatchTokens, Workers: bo.Workers,
		StartedUTC: time.Now().UTC().Format(time.RFC3339),
	}
	for _, name := range names {
		for _, b := range sizes {
			r := benchCell(ctx, m, sets[name], b, *conc, *warmup, *duration)
			r.Texts = name
			rep.Runs = append(rep.Runs, r)
			fmt.Fprintf(os.Stderr, "%-28s batch %4d conc %3d: %9.0f sent/s %10.0f tok/s  p50 %7.2f ms  p99 %7.2f ms  errors %d\n",
				name, b, *conc, r.PerSecond, r.TokensPerS, r.P50ms, r.P99ms, r.Errors)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	rep.ModelRuns, rep.BatchErrors = events.runs.Load(), events.errs.Load()
	rep.OOMSplits, rep.CPURetries = events.splits.Load(), events.cpu.Load()
	enc, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if *out != "" {
		if err := os.WriteFile(*out, append(enc, '\n'), 0o644); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintln(stdout, string(enc))
	return err
}

// benchCell runs conc callers that each embed batch-sized slices of texts,
// round-robin, for warmup plus duration, and measures the second part.
func benchCell(ctx context.Context, m *engine.Model, texts []string, batch, conc int, warmup, duration time.Duration) benchRun {
	type sample struct {
		lat    time.Duration
		n, tok int
		err    bool
	}
	// A call counts when it starts inside [from, end); the cell's time runs
	// from from to the end of the last counted call, so that slow calls
	// (a batch of 256 long texts on a CPU) still yield a measurement.
	start := time.Now()
	from, end := start.Add(warmup), start.Add(warmup+duration)
	type result struct {
		samples []sample
		last    time.Time
	}
	results := make(chan result, conc)
	for w := range conc {
		go func() {
			var got []sample
			var last time.Time
			next := w * batch
			call := make([]string, batch)
			for {
				t0 := time.Now()
				if t0.After(end) || ctx.Err() != nil {
					break
				}
				for i := range call {
					call[i] = texts[(next+i)%len(texts)]
				}
				next += batch * conc
				res, err := m.Embed(ctx, call, engine.EmbedOptions{Truncate: true})
				t1 := time.Now()
				if t0.Before(from) {
					continue
				}
				last = t1
				s := sample{lat: t1.Sub(t0), n: batch, err: err != nil}
				if err == nil {
					for _, k := range res.Tokens {
						s.tok += k
					}
				}
				got = append(got, s)
			}
			results <- result{got, last}
		}()
	}
	r := benchRun{Batch: batch, Concurrency: conc}
	var lats []time.Duration
	last := from
	for range conc {
		res := <-results
		if res.last.After(last) {
			last = res.last
		}
		for _, s := range res.samples {
			if s.err {
				r.Errors++
				continue
			}
			r.Calls++
			r.Sentences += s.n
			r.Tokens += int64(s.tok)
			lats = append(lats, s.lat)
		}
	}
	r.Seconds = max(last.Sub(from).Seconds(), 1e-9)
	slices.Sort(lats)
	if len(lats) > 0 {
		r.P50ms = float64(lats[len(lats)*50/100]) / 1e6
		r.P99ms = float64(lats[min(len(lats)-1, len(lats)*99/100)]) / 1e6
	}
	r.PerSecond = float64(r.Sentences) / r.Seconds
	r.TokensPerS = float64(r.Tokens) / r.Seconds
	if r.Sentences > 0 {
		r.MeanTokens = float64(r.Tokens) / float64(r.Sentences)
	}
	return r
}

// readJSONLTexts reads the "text" field of each line of a JSON Lines file.
func readJSONLTexts(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readJSONL(f, path)
}

// readJSONL reads the "text" field of each line of r, named path in errors.
func readJSONL(r io.Reader, path string) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxStdinLine)
	var texts []string
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var rec struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Text == nil {
			return nil, fmt.Errorf("%s line %d: want a JSON object with a \"text\" string", path, line)
		}
		texts = append(texts, *rec.Text)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(texts) == 0 {
		return nil, fmt.Errorf("%s: no texts", path)
	}
	return texts, nil
}
