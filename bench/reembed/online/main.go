// Command online measures what a re-embedding job costs a server's online
// traffic (make bench, section reembed-online): the p50 and p99 latency of
// online Embed requests at a fixed open-loop rate (bench/load), alone, and
// while `embedd reembed --server` embeds a corpus through the same
// server's EmbedStream (bulk priority) without a rate limit and with
// --max-rate. The phases alternate for -rounds rounds on one server, so
// each "with a job" number has an "alone" number measured beside it; the
// ratios of those pairs are the result, and their spread over the rounds
// is the noise.
//
// The job writes its own stores (by default the embedded store in a
// temporary directory) on this machine, so it competes with the server for
// the CPU twice: through the server's model runs, and with its own store
// writes. A job on another machine would leave only the first.
//
// Usage (after go build -o bin/embedd ./cmd/embedd; go build -o bin/load ./bench/load):
//
//	go run ./bench/reembed/online [-n 20000] [-rate 40] [-duration 10s] [-max-rate 100] [-rounds 2]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type config struct {
	embedd, load, model, addr, metricsAddr, out, results, jobFlags, serveFlags string
	n, rounds, serverChunk                                                     int
	rate, maxRate                                                              float64
	duration, warmup, ramp                                                     time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.embedd, "embedd", "bin/embedd", "embedd binary")
	flag.StringVar(&c.load, "load", "bin/load", "load generator binary (bench/load)")
	flag.StringVar(&c.model, "model", "all-minilm-l6-v2-q8", "the server's model, which the job and the online requests use")
	flag.StringVar(&c.addr, "addr", "127.0.0.1:50081", "server gRPC address")
	flag.StringVar(&c.metricsAddr, "metrics-addr", "127.0.0.1:9181", "server metrics address")
	flag.StringVar(&c.out, "out", "bench/out/reembed-online", "raw output directory")
	flag.StringVar(&c.results, "results", "bench/results", "where reembed-online.json and reembed-online.md go; empty: not written")
	flag.StringVar(&c.serveFlags, "serve-flags", "", "more flags of the server (space-separated), e.g. --bulk-batch-size=32")
	flag.StringVar(&c.jobFlags, "job-flags", "--milvus-addr= --redis-addr=", "store flags of the job (space-separated; default: the embedded store in a temporary directory)")
	flag.IntVar(&c.n, "n", 20000, "texts in the job's corpus (enough to outlast a phase: the job is stopped when the phase ends)")
	flag.IntVar(&c.rounds, "rounds", 2, "rounds of the three phases")
	flag.IntVar(&c.serverChunk, "server-chunk", 64, "the job's --server-chunk")
	flag.Float64Var(&c.rate, "rate", 40, "online Embed requests/s (one short text each, Poisson arrivals)")
	flag.Float64Var(&c.maxRate, "max-rate", 100, "the rate-limited job's --max-rate (records/s)")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "measured time per phase")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "the load generator's unmeasured warmup per phase")
	flag.DurationVar(&c.ramp, "ramp", 2*time.Second, "time a job runs before the load starts")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("reembed-online: ")
	if err := run(context.Background(), c); err != nil {
		log.Fatal(err)
	}
}

// phase is one measured window.
type phase struct {
	Round   int     `json:"round"`
	Name    string  `json:"name"` // alone, job, job-max-rate
	MaxRate float64 `json:"job_max_rate,omitempty"`
	// Online requests.
	Requests int            `json:"requests"`
	OK       int            `json:"ok"`
	Errors   map[string]int `json:"errors,omitempty"`
	P50MS    float64        `json:"p50_ms"`
	P95MS    float64        `json:"p95_ms"`
	P99MS    float64        `json:"p99_ms"`
	MaxMS    float64        `json:"max_ms"`
	// The job's records embedded per second during the window (0 alone);
	// JobFinished: it ran out of records before the window ended.
	JobItemsPerS float64 `json:"job_items_per_s,omitempty"`
	JobFinished  bool    `json:"job_finished,omitempty"`
}

type result struct {
	Date     string   `json:"date"`
	Machine  string   `json:"machine"`
	Params   config2  `json:"params"`
	Phases   []phase  `json:"phases"`
	Ratios   []ratio  `json:"ratios"`
	Summary  []sumRow `json:"summary"`
	Note     string   `json:"note"`
	Commands []string `json:"commands"`
}

type config2 struct {
	Model       string  `json:"model"`
	OnlineRate  float64 `json:"online_rate_per_s"`
	DurationS   float64 `json:"duration_s"`
	JobTexts    int     `json:"job_texts"`
	JobMaxRate  float64 `json:"job_max_rate"`
	Rounds      int     `json:"rounds"`
	JobFlags    string  `json:"job_flags"`
	ServeFlags  string  `json:"serve_flags,omitempty"`
	ServerChunk int     `json:"server_chunk"`
}

// ratio is one round's "with a job" over its "alone".
type ratio struct {
	Round int     `json:"round"`
	Name  string  `json:"name"`
	P50   float64 `json:"p50_ratio"`
	P99   float64 `json:"p99_ratio"`
}

type sumRow struct {
	Name             string  `json:"name"`
	P50MS            float64 `json:"p50_ms_median"`
	P99MS            float64 `json:"p99_ms_median"`
	P99RatioMin      float64 `json:"p99_ratio_min,omitempty"`
	P99RatioMax      float64 `json:"p99_ratio_max,omitempty"`
	P99RatioMedian   float64 `json:"p99_ratio_median,omitempty"`
	JobItemsPerS     float64 `json:"job_items_per_s,omitempty"`
	OnlineErrorsSum  int     `json:"online_errors"`
	OnlineRequestSum int     `json:"online_requests"`
}

func run(ctx context.Context, c config) error {
	for _, b := range []string{c.embedd, c.load} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s: %w (build it first)", b, err)
		}
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "reembed-online-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	corpus := filepath.Join(tmp, "corpus.jsonl")
	if err := writeCorpus(corpus, c.n); err != nil {
		return err
	}
	srv, err := startServer(c, tmp)
	if err != nil {
		return err
	}
	defer stop(srv, 20*time.Second)

	var phases []phase
	for round := 1; round <= c.rounds; round++ {
		for _, name := range []string{"alone", "job", "job-max-rate"} {
			p, err := measure(ctx, c, tmp, corpus, round, name)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, name, err)
			}
			log.Printf("round %d %-12s p50 %6.2f ms  p99 %6.2f ms  ok %d/%d  job %.0f items/s", round, name, p.P50MS, p.P99MS, p.OK, p.Requests, p.JobItemsPerS)
			phases = append(phases, p)
		}
	}
	res := summarize(c, phases)
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	md := markdown(res)
	fmt.Print(md)
	if err := os.WriteFile(filepath.Join(c.out, "reembed-online.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if c.results != "" {
		if err := os.WriteFile(filepath.Join(c.results, "reembed-online.json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(c.results, "reembed-online.md"), []byte(md), 0o644)
	}
	return nil
}

func writeCorpus(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	for i := range n {
		line, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("doc-%06d", i), "text": fmt.Sprintf("document %d is about topic %d and item %d", i, i%17, i*7919%1000)})
		if _, err := f.Write(append(line, '\n')); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func startServer(c config, tmp string) (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(c.out, "server.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(c.embedd, append([]string{"serve", "--addr", c.addr, "--metrics-addr", c.metricsAddr, "--model", c.model,
		"--embed-cache-bytes", "0", "--data-dir", filepath.Join(tmp, "server"), "--milvus-addr=", "--redis-addr=", "--features=false"},
		strings.Fields(c.serveFlags)...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for range 300 {
		if resp, err := http.Get("http://" + c.metricsAddr + "/metrics"); err == nil {
			resp.Body.Close()
			return cmd, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop(cmd, time.Second)
	return nil, fmt.Errorf("the server did not start; see %s", logf.Name())
}

// stop sends SIGTERM, then SIGKILL after grace.
func stop(cmd *exec.Cmd, grace time.Duration) {
	if cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}

// embedded reads the job's checkpoint: records embedded so far.
func embedded(dataDir string) (int64, bool) {
	b, err := os.ReadFile(filepath.Join(dataDir, "reembed", "online_bench", "shard-0000-of-0001.json"))
	if err != nil {
		return 0, false
	}
	var cp struct {
		Counters struct {
			Embedded int64 `json:"embedded"`
		} `json:"counters"`
		Phase string `json:"phase"`
	}
	if json.Unmarshal(b, &cp) != nil {
		return 0, false
	}
	return cp.Counters.Embedded, true
}

func measure(ctx context.Context, c config, tmp, corpus string, round int, name string) (phase, error) {
	p := phase{Round: round, Name: name}
	label := fmt.Sprintf("%s-%d", name, round)
	var job *exec.Cmd
	var jobDone chan error
	data := filepath.Join(tmp, label)
	if name != "alone" {
		args := []string{"reembed", "--server", c.addr, "--model", c.model, "--collection", "online_bench", "--data-dir", data,
			"--progress", "none", "--server-chunk", strconv.Itoa(c.serverChunk), "--max-retries", "30"}
		args = append(args, strings.Fields(c.jobFlags)...)
		if name == "job-max-rate" {
			p.MaxRate = c.maxRate
			args = append(args, "--max-rate", strconv.FormatFloat(c.maxRate, 'f', -1, 64))
		}
		job = exec.Command(c.embedd, append(args, corpus)...)
		logf, err := os.Create(filepath.Join(c.out, "job-"+label+".log"))
		if err != nil {
			return p, err
		}
		defer logf.Close()
		job.Stdout, job.Stderr = logf, logf
		if err := job.Start(); err != nil {
			return p, err
		}
		jobDone = make(chan error, 1)
		go func() { jobDone <- job.Wait() }()
		started := time.Now()
		for {
			if n, ok := embedded(data); ok && n > 0 && time.Since(started) >= c.ramp {
				break
			}
			select {
			case err := <-jobDone:
				return p, fmt.Errorf("the job ended before the load started (%v); see %s", err, logf.Name())
			case <-time.After(100 * time.Millisecond):
			}
			if time.Since(started) > 2*time.Minute {
				job.Process.Kill()
				<-jobDone
				return p, fmt.Errorf("the job wrote no checkpoint in 2 minutes; see %s", logf.Name())
			}
		}
	}
	n0, _ := embedded(data)
	t0 := time.Now()
	dir := filepath.Join(c.out, label)
	cmd := exec.CommandContext(ctx, c.load, "-addr", c.addr, "-metrics", "http://"+c.metricsAddr+"/metrics", "-model", c.model,
		"-concurrency", "", "-rate", strconv.FormatFloat(c.rate, 'f', -1, 64), "-texts", "short",
		"-duration", c.duration.String(), "-warmup", c.warmup.String(), "-label", label, "-out", dir)
	out, err := cmd.CombinedOutput()
	os.WriteFile(filepath.Join(c.out, "load-"+label+".txt"), out, 0o644)
	if err != nil {
		if job != nil {
			job.Process.Kill()
			<-jobDone
		}
		return p, fmt.Errorf("load: %v\n%s", err, out)
	}
	if job != nil {
		n1, _ := embedded(data)
		p.JobItemsPerS = float64(n1-n0) / time.Since(t0).Seconds()
		select {
		case <-jobDone:
			p.JobFinished = true
		default:
			job.Process.Signal(syscall.SIGTERM)
			select {
			case <-jobDone:
			case <-time.After(20 * time.Second):
				job.Process.Kill()
				<-jobDone
			}
		}
	}
	var rep struct {
		Runs []struct {
			Requests  int            `json:"requests"`
			OK        int            `json:"ok"`
			Errors    map[string]int `json:"errors"`
			LatencyMS struct {
				P50, P95, P99, Max float64
			} `json:"latency_ms"`
		} `json:"runs"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Runs) != 1 {
		return p, fmt.Errorf("%s: %v, %d runs; want 1", filepath.Join(dir, "results.json"), err, len(rep.Runs))
	}
	r := rep.Runs[0]
	p.Requests, p.OK, p.Errors = r.Requests, r.OK, r.Errors
	p.P50MS, p.P95MS, p.P99MS, p.MaxMS = r.LatencyMS.P50, r.LatencyMS.P95, r.LatencyMS.P99, r.LatencyMS.Max
	return p, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize(c config, phases []phase) result {
	res := result{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Machine: machine(),
		Params: config2{Model: c.model, OnlineRate: c.rate, DurationS: c.duration.Seconds(), JobTexts: c.n, JobMaxRate: c.maxRate,
			Rounds: c.rounds, JobFlags: c.jobFlags, ServeFlags: c.serveFlags, ServerChunk: c.serverChunk},
		Phases: phases,
		Note: "Ratios pair each phase with the 'alone' phase of the same round (measured a minute apart on the same server). " +
			"The spread of a ratio over the rounds is the noise; on a shared 2-core machine it can exceed the effect. " +
			"The job writes its stores on the same machine, so it also takes CPU outside the server. " +
			"Job items/s is read from the job's checkpoints, which advance by whole batches of 256 records (about 25 items/s of granularity over a 10s window).",
	}
	alone := map[int]phase{}
	for _, p := range phases {
		if p.Name == "alone" {
			alone[p.Round] = p
		}
	}
	for _, name := range []string{"alone", "job", "job-max-rate"} {
		var p50, p99, ratios, rates []float64
		row := sumRow{Name: name}
		for _, p := range phases {
			if p.Name != name {
				continue
			}
			p50, p99 = append(p50, p.P50MS), append(p99, p.P99MS)
			row.OnlineRequestSum += p.Requests
			for _, n := range p.Errors {
				row.OnlineErrorsSum += n
			}
			if name != "alone" {
				a := alone[p.Round]
				r := ratio{Round: p.Round, Name: name, P50: p.P50MS / a.P50MS, P99: p.P99MS / a.P99MS}
				res.Ratios = append(res.Ratios, r)
				ratios = append(ratios, r.P99)
				rates = append(rates, p.JobItemsPerS)
			}
		}
		row.P50MS, row.P99MS = median(p50), median(p99)
		if len(ratios) > 0 {
			row.P99RatioMin, row.P99RatioMax, row.P99RatioMedian = slices.Min(ratios), slices.Max(ratios), median(ratios)
			row.JobItemsPerS = median(rates)
		}
		res.Summary = append(res.Summary, row)
	}
	res.Commands = []string{"scripts/bench.sh reembed-online", "go run ./bench/reembed/online " + strings.Join(os.Args[1:], " ")}
	return res
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs", model, runtime.NumCPU())
}

func markdown(res result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Online latency with and without a re-embedding job\n\n")
	fmt.Fprintf(&b, "%s; %s. Model %s; online: %g Embed requests/s of one short text (open loop, Poisson), %gs per phase; job: `embedd reembed --server` over %d texts (stores: `%s`), --max-rate %g in the third phase; %d rounds; server flags: `%s`.\n\n",
		res.Date, res.Machine, res.Params.Model, res.Params.OnlineRate, res.Params.DurationS, res.Params.JobTexts, res.Params.JobFlags, res.Params.JobMaxRate, res.Params.Rounds, res.Params.ServeFlags)
	tw := tabwriter.NewWriter(&b, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| phase\t p50 ms (median)\t p99 ms (median)\t p50 / alone, per round\t p99 / alone, per round\t job items/s\t online errors |")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t--- |")
	for _, r := range res.Summary {
		var per50, per99 []string
		for _, x := range res.Ratios {
			if x.Name == r.Name {
				per50 = append(per50, fmt.Sprintf("%.2fx", x.P50))
				per99 = append(per99, fmt.Sprintf("%.2fx", x.P99))
			}
		}
		r50, r99, rate := "1", "1", "-"
		if len(per99) > 0 {
			r50, r99 = strings.Join(per50, ", "), strings.Join(per99, ", ")
			rate = fmt.Sprintf("%.0f", r.JobItemsPerS)
		}
		fmt.Fprintf(tw, "| %s\t %.2f\t %.2f\t %s\t %s\t %s\t %d of %d |\n", r.Name, r.P50MS, r.P99MS, r50, r99, rate, r.OnlineErrorsSum, r.OnlineRequestSum)
	}
	tw.Flush()
	var finished []string
	for _, p := range res.Phases {
		if p.JobFinished {
			finished = append(finished, fmt.Sprintf("%s round %d", p.Name, p.Round))
		}
	}
	if len(finished) > 0 {
		fmt.Fprintf(&b, "\nThe job ran out of records before the window ended in: %s (raise -n).\n", strings.Join(finished, ", "))
	}
	fmt.Fprintf(&b, "\n%s\n\nRerun: `%s`.\n", res.Note, res.Commands[0])
	return b.String()
}
