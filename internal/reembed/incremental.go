package reembed

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"time"

	"github.com/embedd/embedd/internal/store"
)

// Incremental mode: the job writes into the live version, skipping records
// whose text and metadata are unchanged, and (DeleteMissing) deletes this
// shard's ids the source no longer has.

// deleteBatch is the ids of one delete: the index's default MaxItems.
const deleteBatch = 256

// digest identifies a record's content: its text hash and metadata.
func digest(textHash string, meta []byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte(textHash))
	h.Write([]byte{0})
	h.Write(meta)
	return h.Sum64()
}

// loadKnown reads the digest of each of this shard's records in the target
// version that was embedded with the job's model from its text.
func (j *job) loadKnown(ctx context.Context) error {
	j.known = map[string]uint64{}
	err := j.t.ScanVersion(ctx, j.o.Collection, j.js.Target, func(r store.Record) error {
		if r.TextHash != "" && r.ModelVersion == j.o.ModelVersion && j.o.Shard.Owns(r.ID) {
			meta := r.Metadata
			if len(meta) == 0 {
				meta = []byte("{}")
			}
			j.known[r.ID] = digest(r.TextHash, meta)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan %s@%s: %w", j.o.Collection, j.js.Target, err)
	}
	j.o.Logger.Info("reembed: incremental: stored records loaded", "version", j.js.Target, "records", len(j.known))
	return nil
}

// deleteMissing deletes the ids of this shard in the target version that
// the source does not have (a bad record's id counts as present: a record
// is not deleted because its new text is bad). It reads the whole source
// again for the set of its ids, so a resumed job deletes exactly what an
// uninterrupted one would; deletes are idempotent.
func (j *job) deleteMissing(ctx context.Context) error {
	files, err := j.sourceFiles(ctx)
	if err != nil {
		return err
	}
	seen := map[string]struct{}{}
	r := NewReader(files, j.fields(), j.o.Limits, Position{})
	for {
		rec, _, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			r.Close()
			return err
		}
		if rec.ID != "" && j.o.Shard.Owns(rec.ID) {
			seen[rec.ID] = struct{}{}
		}
	}
	if err := r.Close(); err != nil {
		return err
	}
	var missing []string
	err = j.t.ScanVersion(ctx, j.o.Collection, j.js.Target, func(rec store.Record) error {
		if _, ok := seen[rec.ID]; !ok && j.o.Shard.Owns(rec.ID) {
			missing = append(missing, rec.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan %s@%s: %w", j.o.Collection, j.js.Target, err)
	}
	for len(missing) > 0 {
		n := min(len(missing), deleteBatch)
		if err := j.deleteRetry(ctx, missing[:n]); err != nil {
			return err
		}
		j.cp.Counters.Deleted += int64(n)
		missing = missing[n:]
		if err := j.checkpoint(); err != nil {
			return err
		}
	}
	return nil
}

func (j *job) deleteRetry(ctx context.Context, ids []string) error {
	for attempt := 0; ; attempt++ {
		err := j.t.DeleteVersion(ctx, j.o.Collection, j.js.Target, ids)
		if err == nil {
			return nil
		}
		if !j.o.Retryable(err) || attempt >= j.o.MaxRetries {
			return fmt.Errorf("delete %d ids from %s@%s: %w", len(ids), j.o.Collection, j.js.Target, err)
		}
		select {
		case <-time.After(j.backoff(attempt)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
