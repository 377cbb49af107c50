// Command load measures an embedd server over gRPC: throughput and latency
// of single-text Embed calls, and the batch sizes the server formed.
//
// Closed loop (-concurrency 1,16,64,256): at each level, that many clients
// each send an Embed request with one text and wait for the reply before
// sending the next. Open loop (-rate 100,200): requests are sent at a fixed
// rate whatever the server does, with Poisson or uniform gaps, and latency
// runs from each request's scheduled send time, so a slow server cannot
// hide its queueing (no coordinated omission). Every run warms up for
// -warmup, which is not measured, then measures for -duration.
//
// Texts are generated English-like sentences, the same on every machine for
// the same -texts, -n and -seed: short (~8 tokens), medium (~40) or long
// (~200). -dump-texts writes them as JSON Lines for the Python baseline
// (bench/baseline/ort_inprocess.py), so both measure the same texts.
//
// When -metrics is set, the server's embedd_batch_size histogram is scraped
// at the start and end of each measured window to report the mean and the
// distribution of the batches it formed; a server without it only loses
// those columns.
//
// Each run is printed as a table; results.json and PNG charts go to -out
// (default bench/out/load/<label>). -compare reads several results.json
// files (or their directories) and prints them side by side with ratios to
// the first.
//
// Usage:
//
//	go run ./bench/load [-addr 127.0.0.1:50051] [-metrics http://127.0.0.1:9090/metrics]
//	    [-label batched] [-texts short|medium|long] [-concurrency 1,16,64,256]
//	    [-rate R1,R2] [-arrivals poisson|uniform] [-duration 10s] [-warmup 2s]
//	go run ./bench/load -texts short -n 1024 -dump-texts texts.jsonl
//	go run ./bench/load -compare [-out DIR] bench/out/load/batched bench/out/load/max_batch_size=1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("load: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// config holds the flags.
type config struct {
	addr, metrics, model, label, out string
	textSet, dumpTexts, output       string
	concurrency                      []int
	rates                            []float64
	arrivals                         string
	n, conns, maxInFlight            int
	seed                             uint64
	duration, warmup, timeout, wait  time.Duration
	truncate, compare                bool
	zipf                             float64
}

func parseFlags(args []string, stderr io.Writer) (*config, []string, error) {
	var c config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:50051", "server gRPC address")
	fs.StringVar(&c.metrics, "metrics", "http://127.0.0.1:9090/metrics", "server Prometheus endpoint; empty skips batch sizes")
	fs.StringVar(&c.model, "model", "", "model name; empty selects the server's default")
	fs.StringVar(&c.label, "label", "default", "name of this server configuration in reports, e.g. batched or max_batch_size=1")
	fs.StringVar(&c.out, "out", "", "directory for results.json and charts (default bench/out/load/<label>); with -compare, where to write comparison charts (default none)")
	fs.StringVar(&c.textSet, "texts", "short", "text set: short (~8 tokens), medium (~40), long (~200); short16, medium64, long256 (the GPU check's); mixed (equal shares of short16, medium64 and long256)")
	fs.IntVar(&c.n, "n", 1024, "number of distinct texts, sent round-robin")
	fs.Float64Var(&c.zipf, "zipf", 0, "0: requests take the texts in turn; s > 1: each request takes text k with probability proportional to 1/(k+1)^s (a Zipf law, deterministic for -seed), the repeats an embedding cache serves")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the texts and of Poisson arrivals")
	fs.StringVar(&c.dumpTexts, "dump-texts", "", "write the texts as JSON Lines to this file and exit")
	conc := fs.String("concurrency", "1,16,64,256", "closed-loop concurrency levels, comma-separated; empty skips the closed loop")
	rates := fs.String("rate", "", "open-loop rates in requests/s, comma-separated; empty skips the open loop")
	fs.StringVar(&c.arrivals, "arrivals", arrivalsPoisson, "open-loop arrivals: poisson or uniform")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time per run")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured warmup before each run")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "per-request deadline")
	fs.DurationVar(&c.wait, "wait", 30*time.Second, "how long to wait for the server to answer a first request")
	fs.IntVar(&c.conns, "conns", 1, "gRPC connections, used round-robin")
	fs.IntVar(&c.maxInFlight, "max-inflight", 4096, "open loop: most outstanding requests; beyond it sends wait (and the wait counts as latency)")
	fs.BoolVar(&c.truncate, "truncate", false, "set truncate on requests")
	fs.StringVar(&c.output, "output", "float32", "output type: float32, int8 or binary")
	fs.BoolVar(&c.compare, "compare", false, "compare the results.json files (or directories) given as arguments and exit")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	var err error
	if c.concurrency, err = parseList(*conc, strconv.Atoi); err != nil {
		return nil, nil, fmt.Errorf("-concurrency: %w", err)
	}
	if c.rates, err = parseList(*rates, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }); err != nil {
		return nil, nil, fmt.Errorf("-rate: %w", err)
	}
	for _, v := range c.concurrency {
		if v < 1 {
			return nil, nil, fmt.Errorf("-concurrency: %d is not positive", v)
		}
	}
	for _, v := range c.rates {
		if !(v > 0) || v > 1e6 {
			return nil, nil, fmt.Errorf("-rate: %g is not in (0, 1e6]", v)
		}
	}
	switch {
	case c.arrivals != arrivalsPoisson && c.arrivals != arrivalsUniform:
		return nil, nil, fmt.Errorf("-arrivals: %q is neither poisson nor uniform", c.arrivals)
	case c.n < 1:
		return nil, nil, fmt.Errorf("-n: %d is not positive", c.n)
	case c.zipf != 0 && !(c.zipf > 1):
		return nil, nil, fmt.Errorf("-zipf: %g is not greater than 1", c.zipf)
	case c.conns < 1:
		return nil, nil, fmt.Errorf("-conns: %d is not positive", c.conns)
	case c.duration <= 0 || c.warmup < 0 || c.timeout <= 0:
		return nil, nil, errors.New("-duration and -timeout must be positive and -warmup not negative")
	}
	return &c, fs.Args(), nil
}

func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, rest, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.compare {
		return cmdCompare(stdout, stderr, rest, c.out)
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected arguments %q", rest)
	}
	set, err := lookupTextSet(c.textSet)
	if err != nil {
		return err
	}
	texts := generateTexts(set, c.n, c.seed)
	if c.dumpTexts != "" {
		return dumpTexts(c.dumpTexts, set, texts)
	}
	if c.zipf > 0 {
		texts = zipfSchedule(texts, c.zipf, c.seed, zipfScheduleLen)
	}
	outType, ok := embeddv1.OutputType_value["OUTPUT_TYPE_"+strings.ToUpper(c.output)]
	if !ok {
		return fmt.Errorf("-output: unknown output type %q", c.output)
	}
	if c.out == "" {
		c.out = filepath.Join("bench", "out", "load", safeName(c.label))
	}

	clients := make([]embeddv1.EmbeddingServiceClient, c.conns)
	for i := range clients {
		cc, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("connect %s: %w", c.addr, err)
		}
		defer cc.Close()
		clients[i] = embeddv1.NewEmbeddingServiceClient(cc)
	}
	newRequest := func(text string) *embeddv1.EmbedRequest {
		return &embeddv1.EmbedRequest{Model: c.model, Texts: []string{text}, Truncate: c.truncate, OutputType: embeddv1.OutputType(outType)}
	}

	rep := &report{
		Label: c.label, Started: time.Now().UTC(), Addr: c.addr, OutputType: c.output, Truncate: c.truncate,
		TextSet: set.Name, TargetTokens: set.Tokens, Texts: summarizeTexts(texts), Seed: c.seed,
		Conns: c.conns, WarmupS: c.warmup.Seconds(), DurationS: c.duration.Seconds(),
	}
	rep.Client.Go, rep.Client.OS, rep.Client.Arch, rep.Client.CPUs = runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU()

	// Wait until every connection answers, and learn what serves us.
	for _, cl := range clients {
		resp, err := waitReady(ctx, cl, newRequest(texts[0]), c.wait)
		if err != nil {
			return fmt.Errorf("server %s not ready after %s: %w", c.addr, c.wait, err)
		}
		rep.Model, rep.ModelVersion, rep.Dims = resp.GetModel(), resp.GetModelVersion(), resp.GetDims()
	}
	if info, err := clients[0].GetModel(ctx, &embeddv1.GetModelRequest{Name: rep.Model}); err == nil {
		rep.Backend = info.GetBackend()
	} else {
		log.Printf("GetModel %s: %v (backend unknown)", rep.Model, err)
	}
	printHeader(stderr, rep)

	var next atomic.Uint64
	embed := func(ctx context.Context, text string) (int, error) {
		cl := clients[next.Add(1)%uint64(len(clients))]
		resp, err := cl.Embed(ctx, newRequest(text))
		if err != nil {
			return 0, err
		}
		if n := len(resp.GetEmbeddings()); n != 1 {
			return 0, fmt.Errorf("%w: %d embeddings for 1 text", errBadResponse, n)
		}
		tokens := resp.GetTotalTokens()
		if tokens == 0 {
			tokens = uint64(resp.GetEmbeddings()[0].GetTokens())
		}
		return int(tokens), nil
	}

	if err := runSpecs(ctx, c, texts, embed, rep, stderr); err != nil {
		return err
	}

	printHeader(stdout, rep)
	printRuns(stdout, rep.Runs)
	if err := writeReport(c.out, rep); err != nil {
		return err
	}
	files, err := writeCharts(c.out, rep)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", strings.Join(append([]string{filepath.Join(c.out, "results.json")}, files...), ", "))
	return nil
}

// runSpecs runs the closed-loop concurrencies, then the open-loop rates,
// of c in turn, appending each run's result to rep.
func runSpecs(ctx context.Context, c *config, texts []string, embed func(context.Context, string) (int, error), rep *report, stderr io.Writer) error {
	var specs []runSpec
	for _, conc := range c.concurrency {
		specs = append(specs, runSpec{Mode: modeClosed, Concurrency: conc})
	}
	for _, rate := range c.rates {
		specs = append(specs, runSpec{Mode: modeOpen, Rate: rate, Arrivals: c.arrivals, Seed: c.seed, MaxInFlight: c.maxInFlight})
	}
	if len(specs) == 0 {
		return errors.New("nothing to run: -concurrency and -rate are both empty")
	}
	httpClient := &http.Client{}
	for _, spec := range specs {
		spec.Start = time.Now()
		spec.Warmup, spec.Duration, spec.Timeout = c.warmup, c.duration, c.timeout
		var scrape *windowScrape
		if c.metrics != "" {
			_, from, end := spec.window()
			scrape = startWindowScrape(ctx, httpClient, c.metrics, from, end)
		}
		var res runResult
		if spec.Mode == modeOpen {
			res = runOpen(ctx, spec, texts, embed)
		} else {
			res = runClosed(ctx, spec, texts, embed)
		}
		if scrape != nil {
			res.Batch, res.ModelRun, res.BatchError = scrape.wait()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rep.Runs = append(rep.Runs, res)
		fmt.Fprintf(stderr, "%s: %.1f sentences/s, p50 %.2f ms, p99 %.2f ms, errors %s\n",
			res.name(), res.SentencesPerS, res.LatencyMS.P50, res.LatencyMS.P99, formatErrors(res.Errors))
	}

	return nil
}

// waitReady sends req until it succeeds, retrying while the server is
// unreachable or unavailable, for at most wait.
func waitReady(ctx context.Context, cl embeddv1.EmbeddingServiceClient, req *embeddv1.EmbedRequest, wait time.Duration) (*embeddv1.EmbedResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		resp, err := cl.Embed(ctx, req, grpc.WaitForReady(true))
		if err == nil {
			return resp, nil
		}
		if status.Code(err) != codes.Unavailable {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// windowScrape scrapes the batch-size and model-run histograms at the
// start and the end of a measured window, in its own goroutine.
type windowScrape struct {
	done  chan struct{}
	batch []batchStats
	run   *runStats
	err   string
}

func startWindowScrape(ctx context.Context, client *http.Client, url string, from, end time.Time) *windowScrape {
	ws := &windowScrape{done: make(chan struct{})}
	go func() {
		defer close(ws.done)
		scrape := func() (batch, run map[string]*histogram, err error) {
			if batch, err = scrapeHistograms(ctx, client, url, batchMetric); err != nil {
				return nil, nil, err
			}
			run, err = scrapeHistograms(ctx, client, url, runMetric)
			return batch, run, err
		}
		sleepUntil(ctx, from)
		batch0, run0, err := scrape()
		if err != nil {
			ws.err = err.Error()
			return
		}
		sleepUntil(ctx, end)
		batch1, run1, err := scrape()
		if err != nil {
			ws.err = err.Error()
			return
		}
		ws.batch = diffHistograms(batch0, batch1)
		if st, ok := summarizeRuns(diffHistograms(run0, run1)); ok {
			ws.run = &st
		}
		switch {
		case len(batch1) == 0:
			ws.err = "the server exports no " + batchMetric + " histogram"
		case len(ws.batch) == 0:
			ws.err = batchMetric + " recorded no batches"
		}
	}()
	return ws
}

func (ws *windowScrape) wait() ([]batchStats, *runStats, string) {
	<-ws.done
	return ws.batch, ws.run, ws.err
}

func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

func dumpTexts(path string, set textSet, texts []string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	return writeTexts(f, set, texts)
}

func cmdCompare(stdout, stderr io.Writer, paths []string, out string) error {
	if len(paths) < 2 {
		return errors.New("-compare needs two or more results.json files or directories")
	}
	reports := make([]*report, len(paths))
	for i, p := range paths {
		r, err := readReport(p)
		if err != nil {
			return err
		}
		reports[i] = r
	}
	compareReports(stdout, reports)
	if out == "" {
		return nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	files, err := writeCompareCharts(out, reports)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s\n", strings.Join(files, ", "))
	return nil
}

// safeName makes a label usable as a directory name.
func safeName(label string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', strings.ContainsRune("._=-", r):
			return r
		}
		return '_'
	}, label)
}
