package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/embedd/embedd/internal/fsutil"
)

// Job records on disk: <Dir>/<id>.json, 0600, in a 0700 directory.

func (m *Manager) recordPath(id string) string { return filepath.Join(m.o.Dir, id+".json") }

func (m *Manager) deadLetterPath(id string) string {
	return filepath.Join(m.o.Dir, id+".dead-letter.jsonl")
}

// save writes j's record atomically.
func (m *Manager) save(j Job) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(m.recordPath(j.ID), append(b, '\n'), 0o600)
}

// saveLogged saves j and logs a failure: a transition that happened in
// memory is not undone because its record could not be written.
func (m *Manager) saveLogged(j Job) {
	if err := m.save(j); err != nil {
		m.o.Logger.Error("jobs: write the job record", "job", j.ID, "err", err)
	}
}

// makeDir creates Dir 0700, or tightens an existing one to 0700.
func (m *Manager) makeDir() error {
	if err := os.MkdirAll(m.o.Dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(m.o.Dir, 0o700)
}

// openDir loads every record in Dir, oldest first; a missing Dir has none
// (it is created with the first job, so a server that runs no job needs no
// writable data directory). A record that does not parse is logged and
// left alone.
func (m *Manager) openDir() ([]Job, error) {
	entries, err := os.ReadDir(m.o.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err == nil {
		err = m.makeDir()
	}
	if err != nil {
		return nil, err
	}
	var out []Job
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		var j Job
		b, err := os.ReadFile(filepath.Join(m.o.Dir, name))
		if err == nil {
			err = json.Unmarshal(b, &j)
		}
		if err == nil && (j.Format != recordFormat || j.ID+".json" != name || checkID(j.ID) != nil) {
			err = fmt.Errorf("format %d, id %q: not a job record of this version", j.Format, j.ID)
		}
		if err != nil {
			m.o.Logger.Warn("jobs: skipping a job record that does not load", "file", name, "err", err)
			continue
		}
		out = append(out, j)
	}
	slices.SortFunc(out, older)
	return out, nil
}

// remove deletes a job's record and dead-letter file.
func (m *Manager) remove(id string) error {
	err := os.Remove(m.recordPath(id))
	if derr := os.Remove(m.deadLetterPath(id)); derr != nil && !errors.Is(derr, os.ErrNotExist) {
		err = errors.Join(err, derr)
	}
	return err
}

// older orders jobs by creation, then id.
func older(a, b Job) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// newID returns a job id: its creation time (UTC, to the second) and 32
// random bits, e.g. 20261204t210329-1a2b3c4d.
func newID(now time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return now.UTC().Format("20060102t150405") + "-" + hex.EncodeToString(b[:])
}

// checkID refuses ids that are not [0-9a-z-]{1,64}: ids name files.
func checkID(id string) error {
	if id == "" || len(id) > MaxIDBytes {
		return fmt.Errorf("%w: job id: want 1 to %d characters", ErrInvalid, MaxIDBytes)
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-') {
			return fmt.Errorf("%w: job id %q: want [0-9a-z-]", ErrInvalid, id)
		}
	}
	return nil
}

// pruneLocked removes the oldest finished records until fewer than
// MaxHistory remain; ErrFull when only active ones are left. m.mu is held.
func (m *Manager) pruneLocked() error {
	if len(m.jobs) < m.o.MaxHistory {
		return nil
	}
	var done []Job
	for _, e := range m.jobs {
		if !e.job.State.Active() {
			done = append(done, e.job)
		}
	}
	slices.SortFunc(done, older)
	for _, j := range done {
		if len(m.jobs) < m.o.MaxHistory {
			break
		}
		if err := m.remove(j.ID); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		delete(m.jobs, j.ID)
	}
	if len(m.jobs) >= m.o.MaxHistory {
		return fmt.Errorf("%w: %d jobs are queued or running (at most %d kept)", ErrFull, len(m.jobs), m.o.MaxHistory)
	}
	return nil
}
