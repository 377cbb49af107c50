package reembed

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/embedd/embedd/internal/fsutil"
)

// The state of a job on disk (see the package doc for the layout). Every
// file is written atomically (fsutil: temporary file, fsync, rename, fsync
// of the directory); job.json and finalize.lock are created exclusively
// (a hard link that fails if the name exists), so concurrent shards agree
// on one job and one coordinator.

// stateFormat is the version of the state files' format.
const stateFormat = 1

// Phases of a shard.
const (
	PhaseWrite  = "write"  // upserting the source's records
	PhaseDelete = "delete" // deleting ids the source no longer has
	PhaseDone   = "done"
)

// Args are the arguments that decide what a job writes. A run whose Args
// differ from its unfinished job's is refused (Diff names what changed).
type Args struct {
	Collection   string `json:"collection"`
	Model        string `json:"model"`
	ModelVersion string `json:"model_version"`
	// Version is the target version as given ("": derived, see
	// DefaultVersion).
	Version string `json:"version,omitempty"`
	Files   []File `json:"files,omitempty"`
	// FromCollection and FromVersion name a collection source ("" version:
	// the live one when the job starts).
	FromCollection string `json:"from_collection,omitempty"`
	FromVersion    string `json:"from_version,omitempty"`
	Fields         Fields `json:"fields"`
	Truncate       bool   `json:"truncate"`
	Shards         int    `json:"shards"`
	DeleteMissing  bool   `json:"delete_missing"`
}

// Fingerprint is a hash of the arguments (hex, 64 digits).
func (a Args) Fingerprint() string {
	b, _ := json.Marshal(a)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// DefaultVersion is the target version of a job run without --version: the
// model version (cut to 48 bytes, other characters than [A-Za-z0-9_.-] as
// '_') and 12 hex digits of the fingerprint, so every shard and restart of
// the job derives the same name and another job another one.
func (a Args) DefaultVersion() string {
	a.Version = ""
	mv := []byte(a.ModelVersion)
	if len(mv) > 48 {
		mv = mv[:48]
	}
	for i, c := range mv {
		if !(c == '_' || c == '.' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			mv[i] = '_'
		}
	}
	return fmt.Sprintf("%s-%s", mv, a.Fingerprint()[:12])
}

// Diff lists, in words, the differences from old to a.
func (a Args) Diff(old Args) []string {
	var d []string
	str := func(name, was, now string) {
		if was != now {
			d = append(d, fmt.Sprintf("%s was %q, now %q", name, was, now))
		}
	}
	str("--collection", old.Collection, a.Collection)
	str("--model", old.Model, a.Model)
	str("model version", old.ModelVersion, a.ModelVersion)
	str("--version", old.Version, a.Version)
	str("source collection", old.FromCollection, a.FromCollection)
	str("source version", old.FromVersion, a.FromVersion)
	str("--id-field", old.Fields.ID, a.Fields.ID)
	str("--text-field", old.Fields.Text, a.Fields.Text)
	str("--metadata-fields", strings.Join(old.Fields.Metadata, ","), strings.Join(a.Fields.Metadata, ","))
	str("--truncate", fmt.Sprint(old.Truncate), fmt.Sprint(a.Truncate))
	str("shard count", fmt.Sprint(old.Shards), fmt.Sprint(a.Shards))
	str("--delete-missing", fmt.Sprint(old.DeleteMissing), fmt.Sprint(a.DeleteMissing))
	return append(d, diffFiles(old.Files, a.Files)...)
}

func diffFiles(old, now []File) []string {
	var d []string
	byPath := map[string]File{}
	for _, f := range old {
		byPath[f.Path] = f
	}
	for _, f := range now {
		o, ok := byPath[f.Path]
		delete(byPath, f.Path)
		switch {
		case !ok:
			d = append(d, "source "+f.Path+" was added")
		case o.Size != f.Size:
			d = append(d, fmt.Sprintf("source %s changed size (%d -> %d bytes)", f.Path, o.Size, f.Size))
		case o.ModTime != f.ModTime:
			d = append(d, fmt.Sprintf("source %s was modified (%s -> %s)", f.Path, time.Unix(0, o.ModTime).UTC().Format(time.RFC3339Nano), time.Unix(0, f.ModTime).UTC().Format(time.RFC3339Nano)))
		case o.Format != f.Format:
			d = append(d, fmt.Sprintf("source %s format %s -> %s", f.Path, o.Format, f.Format))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(byPath)) {
		d = append(d, "source "+p+" was removed")
	}
	return d
}

// JobState is job.json: one per collection's unfinished job.
type JobState struct {
	Format int  `json:"format"`
	Args   Args `json:"args"`
	// Target is the version written; Incremental says it was the live
	// version, bound to the same model, when the job began.
	Target      string `json:"target"`
	Incremental bool   `json:"incremental"`
	// SourceVersion is the resolved version of a collection source.
	SourceVersion string    `json:"source_version,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
}

// Counters count a shard's records; at a checkpoint they cover exactly the
// records before its position.
type Counters struct {
	// Read counts records read (this shard's, other shards' and bad ones).
	Read int64 `json:"read"`
	// OtherShards counts the records left to other shards.
	OtherShards int64 `json:"other_shards"`
	// Embedded counts records upserted (acknowledged by both stores).
	Embedded int64 `json:"embedded"`
	// Skipped counts unchanged records (incremental mode).
	Skipped int64 `json:"skipped"`
	// Failed counts records written to the dead-letter file.
	Failed int64 `json:"failed"`
	// Duplicates counts records whose id repeated one earlier in the same
	// batch (the later one is written).
	Duplicates int64 `json:"duplicates"`
	// Deleted counts ids deleted because the source no longer has them.
	Deleted int64 `json:"deleted"`
}

func (c *Counters) add(o Counters) {
	c.Read += o.Read
	c.OtherShards += o.OtherShards
	c.Embedded += o.Embedded
	c.Skipped += o.Skipped
	c.Failed += o.Failed
	c.Duplicates += o.Duplicates
	c.Deleted += o.Deleted
}

// Checkpoint is a shard's progress: shard-I-of-N.json, and with Phase done
// the done marker shard-I-of-N.done.
type Checkpoint struct {
	Format int    `json:"format"`
	Shard  string `json:"shard"`
	// Fingerprint is Args.Fingerprint of the job.
	Fingerprint string   `json:"fingerprint"`
	Target      string   `json:"target"`
	Position    Position `json:"position"`
	// DeadLetterBytes is the dead-letter file's size at this position.
	DeadLetterBytes int64     `json:"dead_letter_bytes"`
	Counters        Counters  `json:"counters"`
	Phase           string    `json:"phase"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// stateDir is one collection's job state.
type stateDir struct {
	dir string
}

func (s stateDir) job() string       { return filepath.Join(s.dir, "job.json") }
func (s stateDir) finalized() string { return filepath.Join(s.dir, "finalized.json") }
func (s stateDir) lock() string      { return filepath.Join(s.dir, "finalize.lock") }
func (s stateDir) checkpoint(sh Shard) string {
	return filepath.Join(s.dir, "shard-"+sh.name()+".json")
}
func (s stateDir) doneMarker(sh Shard) string {
	return filepath.Join(s.dir, "shard-"+sh.name()+".done")
}
func (s stateDir) export(sh Shard) string {
	return filepath.Join(s.dir, "shard-"+sh.name()+".export.jsonl")
}
func (s stateDir) deadLetterFor(sh Shard) string {
	return filepath.Join(s.dir, "dead-letter-"+sh.name()+".jsonl")
}

// readJSON reads path into v; it reports whether the file exists.
func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("%s: %w (remove the job's state with --reset to start over)", path, err)
	}
	return true, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(path, append(b, '\n'), 0o644)
}

// createJSON creates path with v unless it exists; it reports whether it
// created it.
func createJSON(path string, v any) (bool, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return false, err
	}
	tmp := path + fmt.Sprintf(".tmp-%d-%d", os.Getpid(), time.Now().UnixNano())
	if err := fsutil.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, fsutil.SyncDir(filepath.Dir(path))
}
