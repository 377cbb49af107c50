package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/reembed"
	"github.com/embedd/embedd/internal/store"
)

// Errors of the Manager. Errors of the index (unknown collection), the
// engine (unknown model) and reembed (a source that matches no file) pass
// through wrapped.
var (
	// ErrInvalid reports a request beyond a limit or malformed.
	ErrInvalid = errors.New("jobs: invalid request")
	// ErrNotFound reports an unknown job id.
	ErrNotFound = errors.New("jobs: no such job")
	// ErrNoSourceRoot reports a file source on a Manager without a
	// source root.
	ErrNoSourceRoot = errors.New("jobs: file sources are off")
	// ErrOutsideRoot reports a source outside the source root.
	ErrOutsideRoot = errors.New("jobs: source outside the source root")
	// ErrBusy reports a collection that has a QUEUED or RUNNING job.
	ErrBusy = errors.New("jobs: collection has an active job")
	// ErrFinished reports a Cancel of a job that already ended.
	ErrFinished = errors.New("jobs: job already finished")
	// ErrFull reports MaxHistory active jobs: none can be pruned.
	ErrFull = errors.New("jobs: too many jobs")
	// ErrClosed reports a call after Close.
	ErrClosed = errors.New("jobs: shutting down")
)

// Limits of a request.
const (
	MaxSources        = 64     // sources per job
	MaxSourceBytes    = 4096   // bytes of one source
	MaxFiles          = 10_000 // files the sources match
	MaxNameBytes      = 256    // bytes of a collection, model, version or field name
	MaxMetadataFields = 64
	MaxIDBytes        = 64 // bytes of a job id
	collectionPrefix  = "collection:"
)

// State is a job's state.
type State string

// The states. QUEUED and RUNNING are active; the others final.
const (
	Queued    State = "QUEUED"
	Running   State = "RUNNING"
	Succeeded State = "SUCCEEDED"
	Failed    State = "FAILED"
	Cancelled State = "CANCELLED"
	// Partial: finished, with records in the dead-letter file.
	Partial State = "PARTIAL"
)

// Active reports whether s is QUEUED or RUNNING.
func (s State) Active() bool { return s == Queued || s == Running }

// Spec is what a job was asked to do: the arguments of `embedd reembed`
// that make sense remotely.
type Spec struct {
	// Collection to write; "" takes Options.DefaultCollection.
	Collection string `json:"collection"`
	// Model to embed with; "" takes Options.DefaultModel.
	Model string `json:"model"`
	// Sources are paths or globs under the source root, or one
	// "collection:NAME[@VERSION]".
	Sources []string `json:"sources"`
	// Format of every file source: "", jsonl, csv or parquet.
	Format         string   `json:"format,omitempty"`
	IDField        string   `json:"id_field,omitempty"`
	TextField      string   `json:"text_field,omitempty"`
	MetadataFields []string `json:"metadata_fields,omitempty"`
	Truncate       bool     `json:"truncate"`
	// Version is the target version; "" derives it (reembed.Options).
	Version       string `json:"version,omitempty"`
	NoSwap        bool   `json:"no_swap,omitempty"`
	DeleteMissing bool   `json:"delete_missing,omitempty"`
	// MaxRate bounds records per second; 0: none.
	MaxRate float64 `json:"max_rate,omitempty"`
	// BatchSize is records per upsert; 0: 256, at most
	// Options.MaxBatchSize.
	BatchSize int `json:"batch_size,omitempty"`
	// Reset discards an unfinished job's state of the collection first.
	Reset bool `json:"reset,omitempty"`
}

// Job is a job's record, the file <Dir>/<id>.json.
type Job struct {
	Format int    `json:"format"`
	ID     string `json:"id"`
	Spec   Spec   `json:"spec"`
	State  State  `json:"state"`
	// Counters cover every run of the job.
	Counters reembed.Counters `json:"counters"`
	// Rate is records embedded per second by the current or last run;
	// ETA the time left at that pace (0: unknown); Progress the fraction
	// of the source's bytes done.
	Rate       float64       `json:"rate"`
	ETA        time.Duration `json:"eta"`
	Progress   float64       `json:"progress"`
	CreatedAt  time.Time     `json:"created_at"`
	StartedAt  time.Time     `json:"started_at,omitzero"`
	FinishedAt time.Time     `json:"finished_at,omitzero"`
	Error      string        `json:"error,omitempty"`
	DeadLetter string        `json:"dead_letter"`
	Target     string        `json:"target,omitempty"`
	Swapped    bool          `json:"swapped"`
	// Incremental: the job writes into the live version.
	Incremental bool `json:"incremental"`
	// Runs counts the runs started (more than 1 after a resume).
	Runs int `json:"runs"`
	// ResetDone: Spec.Reset was applied; a resume must not reset again.
	ResetDone bool `json:"reset_done,omitempty"`
}

// recordFormat is the version of the record's format.
const recordFormat = 1

// Models resolves a model name: the engine.
type Models interface {
	Manifest(name string) (*manifest.Model, error)
}

// Options configures a Manager. Zero fields take the documented defaults
// unless marked required.
type Options struct {
	// Dir holds the job records (created 0700). Required.
	Dir string
	// StateDir is reembed's state directory (checkpoints). Required.
	StateDir string
	// SourceRoot is the directory file sources must be in; "" refuses
	// file sources. It must exist.
	SourceRoot string
	// Target is what jobs write through: reembed.FromIndex of the
	// server's index. Required.
	Target reembed.Target
	// Models resolves model names to versions: the engine. Required.
	Models Models
	// DefaultCollection and DefaultModel fill a Spec that names none.
	DefaultCollection, DefaultModel string
	// MaxConcurrent is the most jobs running at once. Default 1.
	MaxConcurrent int
	// MaxHistory is the most job records kept. Default 1000.
	MaxHistory int
	// MaxBatchSize bounds Spec.BatchSize: the index's items per upsert.
	// Default 256.
	MaxBatchSize int
	// MaxTextBytes bounds a text (the engine's limit). Default reembed's.
	MaxTextBytes int
	// InFlight is the upserts at once of one job. Default reembed's (4).
	InFlight int
	// SaveEvery is how often a running job's counters are written to its
	// record, at most. Default 2s.
	SaveEvery time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" || o.StateDir == "" || o.Target == nil || o.Models == nil {
		return o, fmt.Errorf("%w: dir, state dir, target and models are required", ErrInvalid)
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 1
	}
	if o.MaxHistory <= 0 {
		o.MaxHistory = 1000
	}
	if o.MaxBatchSize <= 0 {
		o.MaxBatchSize = 256
	}
	if o.SaveEvery <= 0 {
		o.SaveEvery = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// check validates s's bounds and fills its defaults.
func (m *Manager) check(s *Spec) error {
	if s.Collection == "" {
		s.Collection = m.o.DefaultCollection
	}
	if s.Model == "" {
		s.Model = m.o.DefaultModel
	}
	for _, f := range []struct{ name, v string }{
		{"collection", s.Collection}, {"model", s.Model}, {"id_field", s.IDField}, {"text_field", s.TextField}, {"version", s.Version},
	} {
		if err := checkName(f.name, f.v, f.name == "collection" || f.name == "model"); err != nil {
			return err
		}
	}
	if len(s.MetadataFields) > MaxMetadataFields {
		return fmt.Errorf("%w: %d metadata_fields; at most %d", ErrInvalid, len(s.MetadataFields), MaxMetadataFields)
	}
	for i, f := range s.MetadataFields {
		if err := checkName(fmt.Sprintf("metadata_fields[%d]", i), f, true); err != nil {
			return err
		}
	}
	if s.Version != "" {
		if err := store.CheckVersion(s.Version); err != nil {
			return fmt.Errorf("%w: version: %v", ErrInvalid, err)
		}
	}
	switch {
	case math.IsNaN(s.MaxRate) || math.IsInf(s.MaxRate, 0) || s.MaxRate < 0:
		return fmt.Errorf("%w: max_rate %v: want a finite number >= 0", ErrInvalid, s.MaxRate)
	case s.BatchSize < 0 || s.BatchSize > m.o.MaxBatchSize:
		return fmt.Errorf("%w: batch_size %d: at most %d (the server's items per upsert)", ErrInvalid, s.BatchSize, m.o.MaxBatchSize)
	case s.Format != "" && s.Format != reembed.FormatJSONL && s.Format != reembed.FormatCSV && s.Format != reembed.FormatParquet:
		return fmt.Errorf("%w: format %q: want jsonl, csv or parquet (or empty: by extension)", ErrInvalid, s.Format)
	}
	return checkSources(s.Sources)
}

func checkSources(sources []string) error {
	if len(sources) == 0 || len(sources) > MaxSources {
		return fmt.Errorf("%w: %d sources; want 1 to %d", ErrInvalid, len(sources), MaxSources)
	}
	for i, src := range sources {
		if src == "" || len(src) > MaxSourceBytes || !utf8.ValidString(src) || strings.ContainsRune(src, 0) {
			return fmt.Errorf("%w: sources[%d]: want 1 to %d bytes of UTF-8 without NUL", ErrInvalid, i, MaxSourceBytes)
		}
		if strings.HasPrefix(src, collectionPrefix) && len(sources) > 1 {
			return fmt.Errorf("%w: sources[%d] %q: a collection source is the only source of its job", ErrInvalid, i, src)
		}
	}
	if name, _ := collectionSource(sources); strings.HasPrefix(sources[0], collectionPrefix) && name == "" {
		return fmt.Errorf("%w: sources[0] %q: want collection:NAME[@VERSION]", ErrInvalid, sources[0])
	}
	return nil
}

// collectionSource returns the collection and version of a collection
// source ("" name: the sources are files).
func collectionSource(sources []string) (name, version string) {
	if len(sources) != 1 || !strings.HasPrefix(sources[0], collectionPrefix) {
		return "", ""
	}
	name, version, _ = strings.Cut(strings.TrimPrefix(sources[0], collectionPrefix), "@")
	return name, version
}

func checkName(field, v string, required bool) error {
	switch {
	case v == "" && required:
		return fmt.Errorf("%w: %s is required", ErrInvalid, field)
	case len(v) > MaxNameBytes || !utf8.ValidString(v) || strings.ContainsRune(v, 0):
		return fmt.Errorf("%w: %s: at most %d bytes of UTF-8 without NUL", ErrInvalid, field, MaxNameBytes)
	}
	return nil
}

// resolve checks what Start checks against the world: the model and the
// collections exist, the files are under the root.
func (m *Manager) resolve(ctx context.Context, s Spec) error {
	if _, err := m.o.Models.Manifest(s.Model); err != nil {
		return err
	}
	if _, err := m.o.Target.Versions(ctx, s.Collection); err != nil {
		return err
	}
	if name, _ := collectionSource(s.Sources); name != "" {
		_, err := m.o.Target.Versions(ctx, name)
		return err
	}
	_, err := m.files(s)
	return err
}
