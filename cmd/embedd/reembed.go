package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/reembed"
	"github.com/embedd/embedd/internal/reembed/remote"
	"github.com/embedd/embedd/models"
)

// `embedd reembed`: batch re-embedding jobs (internal/reembed), embedding
// in process on this machine's engine or, with --server, through a running
// server's EmbedStream (reembed_remote.go), into the stores the store flags
// select.

// jobError is an error of a job that could not run: main exits with status
// 2 for it (the status it gives errUsage), 1 being "some records failed".
type jobError struct{ err error }

func (e jobError) Error() string        { return e.err.Error() }
func (e jobError) Unwrap() error        { return e.err }
func (e jobError) Is(target error) bool { return target == errUsage }

// couldNotRun wraps err as a jobError unless it is one already or nil.
func couldNotRun(err error) error {
	if err == nil || errors.Is(err, errUsage) {
		return err
	}
	return jobError{err}
}

// jobStoreFlags are the store flags the job commands take (serve's, less
// --collections, --hybrid, --durable and --wal-dir: a job names one
// collection and must see its writes acknowledged by the stores).
var jobStoreFlags = []string{"data-dir", "milvus-addr", "milvus-index", "milvus-metric", "milvus-consistency", "redis-addr", "redis-password", "redis-prefix", "entity-ttl"}

// registerJobStores registers jobStoreFlags on fs, with serve's defaults
// and help.
func registerJobStores(fs *flag.FlagSet, c *storeConfig) {
	all := flag.NewFlagSet("stores", flag.ContinueOnError)
	c.register(all)
	for _, name := range jobStoreFlags {
		f := all.Lookup(name)
		fs.Var(f.Value, f.Name, f.Usage)
	}
}

// jobTarget is what the job commands open: the engine (nil for commands
// that do not embed), the stores and the index over them.
type jobTarget struct {
	idx   *index.Index
	close func()
}

// openTarget opens the stores with collections configured for model.
func openTarget(ctx context.Context, c *storeConfig, emb index.Embedder, model string, collections []string, logger *slog.Logger) (*jobTarget, error) {
	var specs []string
	seen := map[string]bool{}
	for _, name := range collections {
		if name != "" && !seen[name] {
			seen[name] = true
			specs = append(specs, name+"="+model)
		}
	}
	c.collections = strings.Join(specs, ",")
	st, err := c.open(ctx, emb, model, nil, logger)
	if err != nil {
		return nil, err
	}
	return &jobTarget{idx: st.idx, close: st.close}, nil
}

// reembedConfig is every setting of `embedd reembed`.
type reembedConfig struct {
	common
	stores           storeConfig
	remote           remoteFlags
	collection       string
	model            string
	version          string
	format           string
	idField          string
	textField        string
	metadataFields   string
	truncate         bool
	batchSize        int
	inFlight         int
	maxRate          float64
	maxRetries       int
	maxLineBytes     int
	stateDir         string
	deadLetter       string
	noSwap           bool
	deleteMissing    bool
	reset            bool
	shard            string
	shards           int
	progress         string
	progressInterval time.Duration

	// remoteStats is what the remote embedder did (set after a --server run).
	remoteStats *remote.Stats
}

func (c *reembedConfig) register(fs *flag.FlagSet) {
	c.common.register(fs)
	registerJobStores(fs, &c.stores)
	c.remote.register(fs)
	d := reembed.DefaultOptions()
	fs.StringVar(&c.collection, "collection", "default", "collection to write (a new version of it, then the alias swap)")
	fs.StringVar(&c.model, "model", models.Default, "model to embed with; the new version is bound to its version")
	fs.StringVar(&c.version, "version", "", "target version name (default: the model version and a hash of the job's arguments; the live version when its model is --model: incremental mode)")
	fs.StringVar(&c.format, "format", "", "format of every SOURCE file: jsonl, csv or parquet (default: by extension)")
	fs.StringVar(&c.idField, "id-field", d.Fields.ID, "source field of the record id")
	fs.StringVar(&c.textField, "text-field", d.Fields.Text, "source field of the text (for a collection: the metadata key holding it)")
	fs.StringVar(&c.metadataFields, "metadata-fields", "", "comma-separated source fields copied into the record's metadata (include the text field to re-embed from the collection later)")
	fs.BoolVar(&c.truncate, "truncate", true, "cut texts longer than the model's max_seq_len; false sends them to the dead-letter file")
	fs.IntVar(&c.batchSize, "batch-size", d.BatchSize, "records per upsert")
	fs.IntVar(&c.inFlight, "in-flight", d.InFlight, "upserts at once")
	fs.Float64Var(&c.maxRate, "max-rate", 0, "most records embedded per second; 0 = no limit (with --server, paced request by request)")
	fs.IntVar(&c.maxRetries, "max-retries", d.MaxRetries, "retries of an upsert a store or the engine refused for now (unavailable, queue full), with backoff; with --server also of each request the server refused for now (RESOURCE_EXHAUSTED, UNAVAILABLE), waiting at least its RetryInfo hint")
	fs.IntVar(&c.maxLineBytes, "max-line-bytes", d.Limits.MaxLineBytes, "longest JSONL line or CSV record in bytes")
	fs.StringVar(&c.stateDir, "state-dir", "", "job state: checkpoints, done markers, dead letters (default <data-dir>/reembed; shards of a job share it)")
	fs.StringVar(&c.deadLetter, "dead-letter", "", "dead-letter JSONL file (default <state-dir>/<collection>/dead-letter-I-of-N.jsonl)")
	fs.BoolVar(&c.noSwap, "no-swap", false, "leave the alias on the live version at the end (swap later with `embedd collections swap`)")
	fs.BoolVar(&c.deleteMissing, "delete-missing", false, "incremental mode: delete the ids the source no longer has")
	fs.BoolVar(&c.reset, "reset", false, "discard an unfinished job's state for this collection and start over")
	fs.StringVar(&c.shard, "shard", "", "run shard i/N of the job: the records whose id hashes to i")
	fs.IntVar(&c.shards, "shards", 0, "run one of N shards, i from $JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)")
	fs.StringVar(&c.progress, "progress", "auto", "auto (a bar on a terminal, else log lines), bar, log or none")
	fs.DurationVar(&c.progressInterval, "progress-interval", 10*time.Second, "interval of the progress log lines")
}

// shardOf reads --shard or --shards with $JOB_COMPLETION_INDEX.
func (c *reembedConfig) shardOf() (reembed.Shard, error) {
	switch {
	case c.shard != "" && c.shards > 0:
		return reembed.Shard{}, fmt.Errorf("%w: give --shard i/N or --shards N, not both", errUsage)
	case c.shard != "":
		s, err := reembed.ParseShard(c.shard)
		if err != nil {
			return s, fmt.Errorf("%w: --shard: %v", errUsage, err)
		}
		return s, nil
	case c.shards > 0:
		v := os.Getenv("JOB_COMPLETION_INDEX")
		i, err := strconv.Atoi(v)
		if err != nil {
			return reembed.Shard{}, fmt.Errorf("%w: --shards %d needs JOB_COMPLETION_INDEX set to the shard index (got %q)", errUsage, c.shards, v)
		}
		s := reembed.Shard{Index: i, Count: c.shards}
		if err := s.Check(); err != nil {
			return s, fmt.Errorf("%w: %v", errUsage, err)
		}
		return s, nil
	}
	return reembed.Shard{Index: 0, Count: 1}, nil
}

func (c *reembedConfig) stateDirOrDefault() string {
	if c.stateDir != "" {
		return c.stateDir
	}
	return filepath.Join(c.stores.dir(), "reembed")
}

// options maps the settings and SOURCE arguments to job options.
func (c *reembedConfig) options(sources []string) (reembed.Options, error) {
	o := reembed.DefaultOptions()
	o.Collection, o.Model, o.Version = c.collection, c.model, c.version
	o.Fields = reembed.Fields{ID: c.idField, Text: c.textField}
	for _, f := range strings.Split(c.metadataFields, ",") {
		if f = strings.TrimSpace(f); f != "" {
			o.Fields.Metadata = append(o.Fields.Metadata, f)
		}
	}
	o.Truncate, o.BatchSize, o.InFlight, o.MaxRate, o.MaxRetries = c.truncate, c.batchSize, c.inFlight, c.maxRate, c.maxRetries
	o.Limits.MaxLineBytes = c.maxLineBytes
	o.StateDir, o.DeadLetter = c.stateDirOrDefault(), c.deadLetter
	o.NoSwap, o.DeleteMissing, o.Reset = c.noSwap, c.deleteMissing, c.reset
	var err error
	if o.Shard, err = c.shardOf(); err != nil {
		return o, err
	}
	if len(sources) == 1 && strings.HasPrefix(sources[0], "collection:") {
		name, version, _ := strings.Cut(strings.TrimPrefix(sources[0], "collection:"), "@")
		o.FromCollection, o.FromVersion = name, version
		return o, nil
	}
	for _, s := range sources {
		if strings.HasPrefix(s, "collection:") {
			return o, fmt.Errorf("%w: a collection source is the only SOURCE of its job", errUsage)
		}
	}
	if o.Files, err = reembed.Expand(sources, c.format); err != nil {
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	return o, nil
}

const reembedUsage = "SOURCE... | collection:NAME[@VERSION]\n\n" +
	"Re-embeds SOURCE files (JSONL, CSV, Parquet; paths or globs) or a collection's stored texts\n" +
	"into a new version of --collection bound to --model, then swaps the alias to it.\n" +
	"Exit status: 0 all written, 1 some records failed (see the dead-letter file), 2 the job could not run.\n" +
	"       embedd reembed finalize [flags]   verify a sharded job's counts and swap the alias once\n"

func cmdReembed(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	if len(args) > 0 && args[0] == "finalize" {
		return couldNotRun(cmdReembedFinalize(ctx, args[1:], stdout, logger))
	}
	var c reembedConfig
	fs := newFlagSet("reembed", reembedUsage)
	c.register(fs)
	if err := c.common.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: reembed needs at least one SOURCE", errUsage)
	}
	o, err := c.options(fs.Args())
	if err != nil {
		return err
	}
	sum, err := c.run(ctx, o, logger)
	if sum != nil {
		printSummary(stdout, o.Collection, sum)
	}
	if s := c.remoteStats; s != nil {
		fmt.Fprintf(stdout, "embedded through server %s: %d requests, %d retried (%d after its RetryInfo hint, hints %s to %s), %s waited\n",
			c.remote.addr, s.Requests, s.Retries, s.Hinted, s.MinHint, s.MaxHint, s.Waited.Round(time.Millisecond))
	}
	if err != nil {
		return couldNotRun(err)
	}
	if sum.ExitCode() != 0 {
		return fmt.Errorf("%d records failed; they are listed in %s", sum.Counters.Failed, sum.DeadLetter)
	}
	return nil
}

// run starts the embedder (the engine, or the remote one of --server) and
// the stores, and runs the job.
func (c *reembedConfig) run(ctx context.Context, o reembed.Options, logger *slog.Logger) (*reembed.Summary, error) {
	if c.batchSize > index.DefaultLimits().MaxItems {
		c.stores.maxItems = c.batchSize
	}
	var emb reembed.Embedder
	if c.remote.addr != "" {
		rm, closeRemote, err := c.openRemote(ctx, logger)
		if err != nil {
			return nil, err
		}
		defer closeRemote()
		emb = rm
		// The remote embedder paces --max-rate request by request (small
		// bulk batches at the server, rather than a whole upsert batch at
		// once); a second limiter per batch would only slow it below the
		// rate. Store writes follow the embeddings, so they keep the rate.
		o.MaxRate = 0
	} else {
		eng, err := c.engine(logger)
		if err != nil {
			return nil, err
		}
		defer eng.Close()
		emb = eng
	}
	m, err := emb.Manifest(c.model)
	if err != nil {
		return nil, err
	}
	o.ModelVersion = m.Version
	o.Limits.MaxTextBytes = engine.DefaultOptions().MaxTextBytes
	t, err := openTarget(ctx, &c.stores, emb, c.model, []string{o.Collection, o.FromCollection}, logger)
	if err != nil {
		return nil, err
	}
	defer t.close()
	o.Logger = logger
	switch p := c.progressMode(); p {
	case "bar":
		bar := reembed.NewBar(os.Stderr)
		defer bar.Close()
		o.Progress = bar
	case "log":
		o.Progress = &reembed.LogProgress{Logger: logger, Interval: c.progressInterval}
	case "none":
	default:
		return nil, fmt.Errorf("%w: --progress %q: want auto, bar, log or none", errUsage, p)
	}
	return reembed.Run(ctx, reembed.FromIndex(t.idx), o)
}

func (c *reembedConfig) progressMode() string {
	if c.progress != "auto" {
		return c.progress
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		return "bar"
	}
	return "log"
}

func printSummary(w io.Writer, collection string, s *reembed.Summary) {
	c := s.Counters
	mode := "new version"
	if s.Incremental {
		mode = "incremental"
	}
	fmt.Fprintf(w, "reembed %s@%s (%s, shard %s): read %d, embedded %d, skipped %d, failed %d, other shards %d, duplicates %d, deleted %d; %s, %.0f items/s\n",
		collection, s.Target, mode, s.Shard, c.Read, c.Embedded, c.Skipped, c.Failed, c.OtherShards, c.Duplicates, c.Deleted, s.Duration.Round(time.Millisecond), s.Rate)
	switch {
	case s.AlreadyDone:
		fmt.Fprintln(w, "the job had already finished; nothing to do (--reset runs it again)")
	case s.Finalized != nil && s.Finalized.Swapped:
		fmt.Fprintf(w, "alias %s -> %s (%d records)\n", collection, s.Finalized.Target, s.Finalized.Count)
	case s.Finalized != nil && s.Incremental:
		fmt.Fprintf(w, "live version %s updated in place (%d records)\n", s.Finalized.Target, s.Finalized.Count)
	case s.Finalized != nil:
		fmt.Fprintf(w, "job finished; alias left where it was (--no-swap): %s has %d records\n", s.Finalized.Target, s.Finalized.Count)
	}
	if c.Failed > 0 {
		fmt.Fprintf(w, "dead letters: %s\n", s.DeadLetter)
	}
}

func cmdReembedFinalize(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	var c reembedConfig
	fs := newFlagSet("reembed finalize", "")
	c.common.register(fs)
	registerJobStores(fs, &c.stores)
	fs.StringVar(&c.collection, "collection", "default", "collection whose job to finalize")
	fs.StringVar(&c.model, "model", models.Default, "model of the collection (its dims must match the stored collection)")
	fs.StringVar(&c.stateDir, "state-dir", "", "the job's state directory (default <data-dir>/reembed)")
	fs.BoolVar(&c.noSwap, "no-swap", false, "verify and mark the job finished, leaving the alias")
	force := fs.Bool("force", false, "swap even if the version holds fewer records than the shards wrote")
	if err := c.common.parse(fs, args); err != nil {
		return err
	}
	t, err := openVersions(ctx, &c.common, &c.stores, c.model, c.collection, logger)
	if err != nil {
		return err
	}
	defer t.close()
	fin, err := reembed.Finalize(ctx, reembed.FromIndex(t.idx), reembed.FinalizeOptions{
		StateDir: c.stateDirOrDefault(), Collection: c.collection, NoSwap: c.noSwap, Force: *force, Logger: logger,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "finalized %s@%s: %d records, %d written by %d shards, swapped %v\n", c.collection, fin.Target, fin.Count, fin.Written, fin.Shards, fin.Swapped)
	return nil
}
