package reembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/embedd/embedd/internal/store"
)

// Errors of a job that could not run (exit code 2).
var (
	// ErrInvalid reports bad options.
	ErrInvalid = errors.New("reembed: invalid options")
	// ErrChanged reports a run whose arguments differ from its unfinished
	// job's; the message lists what changed.
	ErrChanged = errors.New("reembed: arguments changed")
	// ErrVerify reports a version that holds fewer records than its shards
	// wrote: the alias is not swapped.
	ErrVerify = errors.New("reembed: verification failed")
	// ErrNotDone reports a Finalize while shards are still unfinished.
	ErrNotDone = errors.New("reembed: shards not done")
)

// Options configures a job. Zero fields take DefaultOptions' values unless
// marked required.
type Options struct {
	// Collection is the logical collection written. Required.
	Collection string
	// Model names the model and ModelVersion is its version (the
	// manifest's). Required.
	Model, ModelVersion string
	// Version is the target version; "" derives one (Args.DefaultVersion),
	// or in incremental mode takes the live version.
	Version string
	// Files are file sources (Expand), or FromCollection (and FromVersion,
	// "" for the live one) a collection source; exactly one kind.
	Files                       []File
	FromCollection, FromVersion string
	// Fields maps source fields; Fields.Text names a metadata key for a
	// collection source. Default id "id", text "text".
	Fields Fields
	Limits Limits
	// Truncate cuts texts longer than the model's max_seq_len; false makes
	// them bad records. Default false (set it).
	Truncate bool
	// Shard is this process's part of the job. Default 0/1: all of it.
	Shard Shard
	// StateDir holds the job state, in StateDir/<collection>. Required.
	StateDir string
	// DeadLetter is the dead-letter file. Default
	// StateDir/<collection>/dead-letter-I-of-N.jsonl.
	DeadLetter string
	// BatchSize is the records of one upsert. Default 256; at most the
	// index's Limits.MaxItems.
	BatchSize int
	// InFlight is the most upserts at once. Default 4.
	InFlight int
	// MaxRate bounds the records upserted per second. Default 0: no bound.
	MaxRate float64
	// MaxRetries bounds the retries of one upsert after a Retryable error;
	// then the job stops. Default 8.
	MaxRetries int
	// Backoff is the first retry's wait; it doubles up to MaxBackoff, with
	// jitter. Defaults 200ms and 30s.
	Backoff, MaxBackoff time.Duration
	// Retryable says which errors are retried. Default DefaultRetryable.
	Retryable func(error) bool
	// NoSwap leaves the alias where it is when the job finishes.
	NoSwap bool
	// DeleteMissing deletes the ids of this shard that the source no longer
	// has (incremental mode only).
	DeleteMissing bool
	// Reset discards an unfinished job's state before starting.
	Reset bool
	// Progress receives a report after each checkpoint. Default none.
	Progress Progress
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the defaults of the optional fields.
func DefaultOptions() Options {
	return Options{
		Fields: Fields{ID: "id", Text: "text"}, Limits: DefaultLimits(), Shard: Shard{0, 1},
		BatchSize: 256, InFlight: 4, MaxRetries: 8, Backoff: 200 * time.Millisecond, MaxBackoff: 30 * time.Second,
		Retryable: DefaultRetryable, Logger: slog.Default(),
	}
}

func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	switch {
	case o.Collection == "" || o.Model == "" || o.ModelVersion == "" || o.StateDir == "":
		return o, fmt.Errorf("%w: collection, model, model version and state dir are required", ErrInvalid)
	case (len(o.Files) == 0) == (o.FromCollection == ""):
		return o, fmt.Errorf("%w: give source files or a source collection (one kind)", ErrInvalid)
	case o.BatchSize < 0 || o.InFlight < 0 || o.MaxRate < 0 || o.MaxRetries < 0:
		return o, fmt.Errorf("%w: batch size, in-flight, max rate and retries must not be negative", ErrInvalid)
	}
	if o.Version != "" {
		if err := store.CheckVersion(o.Version); err != nil {
			return o, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	if o.Fields.ID == "" {
		o.Fields.ID = d.Fields.ID
	}
	if o.Fields.Text == "" {
		o.Fields.Text = d.Fields.Text
	}
	o.Limits = o.Limits.withDefaults()
	o.Shard = o.Shard.norm()
	if err := o.Shard.Check(); err != nil {
		return o, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	o.BatchSize = orDefault(o.BatchSize, d.BatchSize)
	o.InFlight = orDefault(o.InFlight, d.InFlight)
	o.MaxRetries = orDefault(o.MaxRetries, d.MaxRetries)
	if o.Backoff <= 0 {
		o.Backoff = d.Backoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = d.MaxBackoff
	}
	if o.Retryable == nil {
		o.Retryable = d.Retryable
	}
	if o.Logger == nil {
		o.Logger = d.Logger
	}
	if o.Progress == nil {
		o.Progress = noProgress{}
	}
	return o, nil
}

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

func (o Options) args() Args {
	a := Args{
		Collection: o.Collection, Model: o.Model, ModelVersion: o.ModelVersion, Version: o.Version,
		Files: o.Files, FromCollection: o.FromCollection, FromVersion: o.FromVersion,
		Fields: o.Fields, Truncate: o.Truncate, Shards: o.Shard.Count, DeleteMissing: o.DeleteMissing,
	}
	return a
}

// Summary is what a run did. Counters are the shard's totals, including
// work done before a resume; Duration and Rate are this run's.
type Summary struct {
	Shard       string
	Target      string
	Incremental bool
	Resumed     bool
	// AlreadyDone: the job had finished before this run; nothing was done.
	AlreadyDone bool
	Counters    Counters
	Duration    time.Duration
	// Rate is the records embedded per second by this run.
	Rate       float64
	DeadLetter string
	// Finalized is set when this run finalized the job.
	Finalized *Finalized
}

// ExitCode is the job's exit code: 0 all written, 1 some records failed.
// (A job that could not run returns an error: exit code 2.)
func (s *Summary) ExitCode() int {
	if s.Counters.Failed > 0 {
		return 1
	}
	return 0
}

// job is one run of a shard.
type job struct {
	t     Target
	o     Options
	args  Args
	sd    stateDir
	js    JobState
	cp    Checkpoint
	dl    *deadLetter
	known map[string]uint64 // incremental: id -> digest of the stored record
	start time.Time
	base  Counters // counters when this run began
}

// Run runs (or resumes) o's shard of a job against t.
func Run(ctx context.Context, t Target, o Options) (*Summary, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	j := &job{t: t, o: o, args: o.args(), sd: stateDir{filepath.Join(o.StateDir, o.Collection)}, start: time.Now()}
	if err := os.MkdirAll(j.sd.dir, 0o755); err != nil {
		return nil, err
	}
	done, err := j.open(ctx)
	if err != nil || done {
		return j.summary(done), err
	}
	if err := j.run(ctx); err != nil {
		return j.summary(false), err
	}
	s := j.summary(false)
	s.Finalized, err = j.maybeFinalize(ctx)
	return s, err
}

// run takes the shard through its phases to done.
func (j *job) run(ctx context.Context) (err error) {
	if j.cp.Phase == PhaseDone {
		return nil
	}
	if j.dl, err = openDeadLetter(j.deadLetterPath(), j.cp.DeadLetterBytes); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, j.dl.Close()) }()
	if j.js.Incremental {
		if err := j.loadKnown(ctx); err != nil {
			return err
		}
	}
	if j.cp.Phase == PhaseWrite {
		files, err := j.sourceFiles(ctx)
		if err != nil {
			return err
		}
		if err := j.write(ctx, files); err != nil {
			return err
		}
		j.cp.Phase = PhaseDelete
		if err := j.checkpoint(); err != nil {
			return err
		}
	}
	if j.o.DeleteMissing && j.js.Incremental {
		if err := j.deleteMissing(ctx); err != nil {
			return err
		}
	}
	j.cp.Phase = PhaseDone
	if err := j.checkpoint(); err != nil {
		return err
	}
	return writeJSON(j.sd.doneMarker(j.o.Shard), j.cp)
}

func (j *job) deadLetterPath() string {
	if j.o.DeadLetter != "" {
		return j.o.DeadLetter
	}
	return j.sd.deadLetterFor(j.o.Shard)
}

func (j *job) checkpoint() error {
	j.cp.UpdatedAt = time.Now().UTC()
	if j.dl != nil {
		j.cp.DeadLetterBytes = j.dl.size
	}
	return writeJSON(j.sd.checkpoint(j.o.Shard), j.cp)
}

func (j *job) summary(alreadyDone bool) *Summary {
	d := time.Since(j.start)
	s := &Summary{
		Shard: j.o.Shard.String(), Target: j.js.Target, Incremental: j.js.Incremental, AlreadyDone: alreadyDone,
		Resumed: j.base != (Counters{}), Counters: j.cp.Counters, Duration: d, DeadLetter: j.deadLetterPath(),
	}
	if secs := d.Seconds(); secs > 0 {
		s.Rate = float64(j.cp.Counters.Embedded-j.base.Embedded) / secs
	}
	return s
}

// open loads or creates the job and the shard's checkpoint, and creates
// the target version. It reports whether the job had already finished with
// the same arguments (then there is nothing to do).
func (j *job) open(ctx context.Context) (alreadyDone bool, err error) {
	exists, err := readJSON(j.sd.job(), &j.js)
	if err != nil {
		return false, err
	}
	finalized, err := fileExists(j.sd.finalized())
	if err != nil {
		return false, err
	}
	if exists && finalized && !j.o.Reset && len(j.args.Diff(j.js.Args)) == 0 {
		var fin Finalized
		if _, err := readJSON(j.sd.finalized(), &fin); err != nil {
			return false, err
		}
		_, err := readJSON(j.sd.checkpoint(j.o.Shard), &j.cp)
		j.o.Logger.Info("reembed: this job already finished; nothing to do (pass --reset to run it again)", "collection", j.o.Collection, "version", fin.Target)
		return true, err
	}
	if exists && (finalized || j.o.Reset) {
		if err := j.archive(); err != nil {
			return false, err
		}
		exists = false
	}
	if !exists {
		if err := j.createJob(ctx); err != nil {
			return false, err
		}
	} else if diff := j.args.Diff(j.js.Args); len(diff) > 0 {
		return false, fmt.Errorf("%w: collection %q has an unfinished job (version %s, started %s) with other arguments: %s; run it again with its arguments to finish it, or pass --reset to discard its state",
			ErrChanged, j.o.Collection, j.js.Target, j.js.CreatedAt.Format(time.RFC3339), strings.Join(diff, "; "))
	}
	if err := j.createVersion(ctx); err != nil {
		return false, err
	}
	return false, j.loadCheckpoint()
}

// createVersion creates the target version (every shard does; it is
// idempotent). Shards starting together may race to create it on a server
// store, so a failure is tried again twice, a second apart.
func (j *job) createVersion(ctx context.Context) error {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if _, err = j.t.CreateVersion(ctx, j.o.Collection, j.js.Target, j.o.Model); err == nil {
			return nil
		}
	}
	return fmt.Errorf("create version %s of %q: %w", j.js.Target, j.o.Collection, err)
}

// createJob decides the target version and mode and creates job.json; if
// another shard created it first, that one is compared instead.
func (j *job) createJob(ctx context.Context) error {
	versions, err := j.t.Versions(ctx, j.o.Collection)
	if err != nil {
		return fmt.Errorf("versions of %q: %w", j.o.Collection, err)
	}
	js := JobState{Format: stateFormat, Args: j.args, Target: j.o.Version, CreatedAt: time.Now().UTC()}
	if js.Target == "" {
		js.Target = j.args.DefaultVersion()
	}
	for _, v := range versions {
		if j.o.Version != "" && v.Version == j.o.Version && v.ModelVersion != "" && v.ModelVersion != j.o.ModelVersion {
			return fmt.Errorf("%w: collection %q version %q is bound to model version %q, but model %q is version %q where this job embeds; a version holds one model's vectors: name a new --version (or none) to re-embed into a new one",
				ErrInvalid, j.o.Collection, v.Version, v.ModelVersion, j.o.Model, j.o.ModelVersion)
		}
		if v.Live && v.ModelVersion == j.o.ModelVersion && (j.o.Version == "" || j.o.Version == v.Version) {
			js.Target, js.Incremental = v.Version, true
		}
	}
	if j.o.FromCollection != "" {
		if js.SourceVersion, err = j.sourceVersion(ctx); err != nil {
			return err
		}
	}
	created, err := createJSON(j.sd.job(), js)
	if err != nil {
		return err
	}
	if created {
		j.js = js
		return nil
	}
	if _, err := readJSON(j.sd.job(), &j.js); err != nil {
		return err
	}
	if diff := j.args.Diff(j.js.Args); len(diff) > 0 {
		return fmt.Errorf("%w: another shard started this job with other arguments: %s", ErrChanged, strings.Join(diff, "; "))
	}
	return nil
}

// archive moves a finished (or reset) job's state aside, to
// <collection>.<target>.<unix time>.
func (j *job) archive() error {
	to := fmt.Sprintf("%s.%s.%d", j.sd.dir, j.js.Target, time.Now().Unix())
	if err := os.Rename(j.sd.dir, to); err != nil {
		return fmt.Errorf("archive the previous job's state: %w", err)
	}
	j.o.Logger.Info("reembed: previous job's state moved aside", "to", to)
	j.js = JobState{}
	return os.MkdirAll(j.sd.dir, 0o755)
}

func (j *job) loadCheckpoint() error {
	exists, err := readJSON(j.sd.checkpoint(j.o.Shard), &j.cp)
	if err != nil {
		return err
	}
	if !exists {
		j.cp = Checkpoint{Format: stateFormat, Shard: j.o.Shard.String(), Fingerprint: j.args.Fingerprint(), Target: j.js.Target, Phase: PhaseWrite}
		return nil
	}
	if j.cp.Fingerprint != j.args.Fingerprint() || j.cp.Target != j.js.Target {
		return fmt.Errorf("%w: checkpoint %s is of another job (version %s); pass --reset to discard the state", ErrChanged, j.sd.checkpoint(j.o.Shard), j.cp.Target)
	}
	j.base = j.cp.Counters
	j.o.Logger.Info("reembed: resuming", "shard", j.cp.Shard, "phase", j.cp.Phase, "position", j.cp.Position, "embedded", j.cp.Counters.Embedded)
	return nil
}

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
