package reembed

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/embedd/embedd/internal/store"
)

// Finalized is finalized.json: the job's end.
type Finalized struct {
	Target string `json:"target"`
	// Swapped says the alias was moved to Target by this step.
	Swapped bool `json:"swapped"`
	// Count is the version's record count, Written the sum of the
	// shards' embedded counters.
	Count   int64     `json:"count"`
	Written int64     `json:"written"`
	Shards  int       `json:"shards"`
	At      time.Time `json:"at"`
}

// FinalizeOptions configures Finalize.
type FinalizeOptions struct {
	// StateDir and Collection locate the job (as in Options). Required.
	StateDir, Collection string
	// NoSwap verifies and marks the job finished without moving the alias.
	NoSwap bool
	// Force swaps even when the version holds fewer records than the
	// shards wrote (every shard must still be done).
	Force bool
	// Settle is how long a count below the records written is checked
	// again (a scan, every second) before the job is refused: Milvus
	// counts flushed rows only and a scan may lag other processes' writes.
	// Default 30s.
	Settle time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// DefaultSettle is FinalizeOptions.Settle's default.
const DefaultSettle = 30 * time.Second

// Finalize is the coordinator step run by hand: with every shard done, it
// verifies the counts and swaps the alias once (idempotent: a finalized
// job is reported as it is).
func Finalize(ctx context.Context, t Target, o FinalizeOptions) (*Finalized, error) {
	if o.StateDir == "" || o.Collection == "" {
		return nil, fmt.Errorf("%w: state dir and collection are required", ErrInvalid)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	sd := stateDir{filepath.Join(o.StateDir, o.Collection)}
	var js JobState
	exists, err := readJSON(sd.job(), &js)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("%w: no job for collection %q in %s", ErrNotDone, o.Collection, o.StateDir)
	}
	return finalize(ctx, t, sd, js, o)
}

// maybeFinalize finalizes the job if every shard is done and no other
// process claimed the step first.
func (j *job) maybeFinalize(ctx context.Context) (*Finalized, error) {
	if missing := missingShards(j.sd, j.js.Args.Shards); len(missing) > 0 {
		j.o.Logger.Info("reembed: shard done; the last shard to finish swaps the alias", "shard", j.o.Shard.String(), "waiting_for", strings.Join(missing, ","))
		return nil, nil
	}
	claimed, err := createJSON(j.sd.lock(), map[string]any{"shard": j.o.Shard.String(), "pid": os.Getpid(), "at": time.Now().UTC()})
	if err != nil || !claimed {
		return nil, err
	}
	fin, err := finalize(ctx, j.t, j.sd, j.js, FinalizeOptions{NoSwap: j.o.NoSwap, Logger: j.o.Logger})
	if err != nil {
		os.Remove(j.sd.lock()) // let a retry (or `reembed finalize`) try again
	}
	return fin, err
}

func missingShards(sd stateDir, n int) []string {
	var missing []string
	for i := range max(n, 1) {
		if ok, _ := fileExists(sd.doneMarker(Shard{i, max(n, 1)})); !ok {
			missing = append(missing, fmt.Sprint(i))
		}
	}
	return missing
}

func finalize(ctx context.Context, t Target, sd stateDir, js JobState, o FinalizeOptions) (*Finalized, error) {
	var fin Finalized
	if done, err := readJSON(sd.finalized(), &fin); err != nil || done {
		return &fin, err
	}
	n := max(js.Args.Shards, 1)
	if missing := missingShards(sd, n); len(missing) > 0 {
		return nil, fmt.Errorf("%w: shards %s of %d have not finished (no done marker in %s)", ErrNotDone, strings.Join(missing, ","), n, sd.dir)
	}
	var total Counters
	for i := range n {
		var cp Checkpoint
		if _, err := readJSON(sd.doneMarker(Shard{i, n}), &cp); err != nil {
			return nil, err
		}
		total.add(cp.Counters)
	}
	coll := js.Args.Collection
	vs, err := t.Versions(ctx, coll)
	if err != nil {
		return nil, fmt.Errorf("versions of %q: %w", coll, err)
	}
	fin = Finalized{Target: js.Target, Written: total.Embedded, Shards: n, At: time.Now().UTC()}
	found, live := false, false
	for _, v := range vs {
		if v.Version == js.Target {
			found, live, fin.Count = true, v.Live, v.Count
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: version %s of %q does not exist", ErrVerify, js.Target, coll)
	}
	if !js.Incremental && fin.Count < fin.Written && !o.Force {
		if fin.Count, err = settleCount(ctx, t, coll, js.Target, fin.Written, o.Settle); err != nil {
			return nil, err
		}
	}
	if !js.Incremental && fin.Count < fin.Written && !o.Force {
		return nil, fmt.Errorf("%w: version %s of %q holds %d records but its %d shards wrote %d (ids repeated across batches of the source also count once); the alias was not swapped: check, then run `embedd reembed finalize --force` or `embedd collections swap`",
			ErrVerify, js.Target, coll, fin.Count, n, fin.Written)
	}
	if !o.NoSwap && !js.Incremental && !live {
		if err := t.SwapAlias(ctx, coll, js.Target); err != nil {
			return nil, fmt.Errorf("swap %q to %s: %w", coll, js.Target, err)
		}
		fin.Swapped = true
	}
	if err := writeJSON(sd.finalized(), fin); err != nil {
		return nil, err
	}
	o.Logger.Info("reembed: job finalized", "collection", coll, "version", js.Target, "records", fin.Count, "written", fin.Written, "shards", n, "swapped", fin.Swapped)
	return &fin, nil
}

// UnfinishedTarget returns the target version of collection's unfinished
// job in stateDir, or "" when there is none (gc keeps that version).
func UnfinishedTarget(dir, collection string) (string, error) {
	sd := stateDir{filepath.Join(dir, collection)}
	var js JobState
	exists, err := readJSON(sd.job(), &js)
	if err != nil || !exists {
		return "", err
	}
	if done, err := fileExists(sd.finalized()); err != nil || done {
		return "", err
	}
	return js.Target, nil
}

// settleCount counts version's records with a scan until there are at
// least written, for at most settle (0: DefaultSettle); it returns the last
// count.
func settleCount(ctx context.Context, t Target, coll, version string, written int64, settle time.Duration) (int64, error) {
	if settle <= 0 {
		settle = DefaultSettle
	}
	deadline := time.Now().Add(settle)
	for {
		var n int64
		err := t.ScanVersion(ctx, coll, version, func(store.Record) error { n++; return nil })
		if err != nil {
			return 0, fmt.Errorf("scan %s@%s: %w", coll, version, err)
		}
		if n >= written || time.Now().After(deadline) {
			return n, nil
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
}
