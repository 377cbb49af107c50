package reembed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/embedd/embedd/internal/index"
)

// The write phase: one goroutine reads the source and forms batches, up to
// InFlight goroutines upsert them, one goroutine commits them in source
// order (dead-letter lines, then the checkpoint). A batch is a contiguous
// range of source records, so the checkpoint after it covers every record
// before its end.

// scanFactor bounds the records one batch spans (BatchSize*scanFactor), so
// a source whose records are mostly skipped or other shards' still
// checkpoints regularly.
const scanFactor = 8

// batchWork is one batch: its records to upsert, the bad ones, the counts
// of the others, and where it ends.
type batchWork struct {
	items   []index.Item
	where   []string       // items[i]'s position
	ord     []int          // items[i]'s record number in the batch
	byID    map[string]int // index in items
	rejects []deadLine
	counts  Counters
	records int
	end     Position
	bytes   int64 // source bytes behind end, for progress
	done    chan struct{}
	err     error
}

func newBatch(size int) *batchWork {
	return &batchWork{byID: make(map[string]int, size), done: make(chan struct{})}
}

func (j *job) write(ctx context.Context, files []File) error {
	r := NewReader(files, j.fields(), j.o.Limits, j.cp.Position)
	defer r.Close()
	var lim *rate.Limiter
	if j.o.MaxRate > 0 {
		lim = rate.NewLimiter(rate.Limit(j.o.MaxRate), j.o.BatchSize)
	}
	work := make(chan *batchWork)
	ordered := make(chan *batchWork, j.o.InFlight)
	g, gctx := errgroup.WithContext(ctx)
	for range j.o.InFlight {
		g.Go(func() error {
			for b := range work {
				b.err = j.upsert(gctx, lim, b)
				close(b.done)
				if b.err != nil {
					return b.err
				}
			}
			return nil
		})
	}
	_, total := r.Progress()
	g.Go(func() error { return j.commitLoop(gctx, ordered, total) })
	g.Go(func() error {
		defer close(ordered)
		defer close(work)
		return j.produce(gctx, r, work, ordered)
	})
	return g.Wait()
}

// fields are the reader's fields: the export's for a collection source.
func (j *job) fields() Fields {
	if j.o.FromCollection != "" {
		return Fields{ID: "id", Text: "text"}
	}
	return j.o.Fields
}

func (j *job) produce(ctx context.Context, r *Reader, work, ordered chan<- *batchWork) error {
	b := newBatch(j.o.BatchSize)
	for {
		rec, pos, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		b.end, b.records = pos, b.records+1
		j.route(b, rec)
		if len(b.items) >= j.o.BatchSize || b.records >= j.o.BatchSize*scanFactor {
			b.bytes, _ = r.Progress()
			if err := dispatch(ctx, b, work, ordered); err != nil {
				return err
			}
			b = newBatch(j.o.BatchSize)
		}
	}
	if b.records == 0 {
		return nil
	}
	b.bytes, _ = r.Progress()
	return dispatch(ctx, b, work, ordered)
}

// dispatch hands b to an upserting goroutine (unless it has nothing to
// upsert) and then to the committer, in source order.
func dispatch(ctx context.Context, b *batchWork, work, ordered chan<- *batchWork) error {
	if len(b.items) == 0 {
		close(b.done)
	} else {
		select {
		case work <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case ordered <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// route puts one record in b: rejected, another shard's, unchanged, or to
// upsert (a repeated id replaces the earlier record of the batch).
func (j *job) route(b *batchWork, rec Record) {
	b.counts.Read++
	owner := rec.ID
	if owner == "" {
		owner = rec.Where // a bad record without id still has one owner
	}
	if !j.o.Shard.Owns(owner) {
		b.counts.OtherShards++
		return
	}
	if rec.Reason != "" {
		b.reject(b.records, rec.Where, rec.ID, rec.Reason)
		return
	}
	meta := rec.Metadata
	if len(meta) == 0 {
		meta = []byte("{}")
	}
	if d, ok := j.known[rec.ID]; ok && d == digest(index.TextHash(rec.Text), meta) {
		b.counts.Skipped++
		return
	}
	it := index.Item{ID: rec.ID, Text: rec.Text, Metadata: meta}
	if i, dup := b.byID[rec.ID]; dup {
		b.items[i], b.where[i], b.ord[i] = it, rec.Where, b.records
		b.counts.Duplicates++
		return
	}
	b.byID[rec.ID] = len(b.items)
	b.items = append(b.items, it)
	b.where = append(b.where, rec.Where)
	b.ord = append(b.ord, b.records)
}

// reject lists a bad record; ord is its number in the batch, which orders
// the dead-letter lines as the source does.
func (b *batchWork) reject(ord int, where, id, reason string) {
	b.rejects = append(b.rejects, deadLine{Position: where, ID: id, Reason: reason, ord: ord})
	b.counts.Failed++
}

// upsert writes b's items: the index's per-item errors go to the
// dead-letter lines and the rest is written again at once; Retryable
// errors are retried after a backoff, MaxRetries times.
func (j *job) upsert(ctx context.Context, lim *rate.Limiter, b *batchWork) error {
	items, where, ord := b.items, b.where, b.ord
	for attempt := 0; len(items) > 0; {
		if lim != nil {
			if err := lim.WaitN(ctx, len(items)); err != nil {
				return err
			}
		}
		err := j.t.UpsertVersion(ctx, j.o.Collection, j.js.Target, items, j.o.Truncate)
		if err == nil {
			b.counts.Embedded += int64(len(items))
			return nil
		}
		var ie *index.InputError
		if errors.As(err, &ie) && len(ie.Items) > 0 {
			bad := make(map[int]string, len(ie.Items))
			for _, e := range ie.Items {
				bad[e.Index] = e.Err.Error()
			}
			var keepI []index.Item
			var keepW []string
			var keepO []int
			for i := range items {
				if reason, ok := bad[i]; ok {
					b.reject(ord[i], where[i], items[i].ID, reason)
					continue
				}
				keepI, keepW, keepO = append(keepI, items[i]), append(keepW, where[i]), append(keepO, ord[i])
			}
			if len(keepI) == len(items) {
				return fmt.Errorf("upsert: %w", err) // names no item of the batch
			}
			items, where, ord = keepI, keepW, keepO
			continue
		}
		if !j.o.Retryable(err) || attempt >= j.o.MaxRetries {
			return fmt.Errorf("upsert of %d records (%s to %s) into %s@%s: %w", len(items), where[0], where[len(where)-1], j.o.Collection, j.js.Target, err)
		}
		wait := j.backoff(attempt)
		j.o.Logger.Warn("reembed: upsert failed; retrying", "attempt", attempt+1, "wait", wait, "err", err)
		attempt++
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// backoff is Backoff doubled per attempt up to MaxBackoff, from half to the
// whole of it (jitter spreads the retries of concurrent shards).
func (j *job) backoff(attempt int) time.Duration {
	d := j.o.Backoff << min(attempt, 20)
	if d <= 0 || d > j.o.MaxBackoff {
		d = j.o.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// commitLoop commits the batches in order once each is acknowledged.
func (j *job) commitLoop(ctx context.Context, ordered <-chan *batchWork, total int64) error {
	for b := range ordered {
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if b.err != nil {
			return b.err
		}
		slices.SortFunc(b.rejects, func(x, y deadLine) int { return x.ord - y.ord })
		if err := j.dl.write(b.rejects); err != nil {
			return err
		}
		j.cp.Counters.add(b.counts)
		j.cp.Position = b.end
		if err := j.checkpoint(); err != nil {
			return err
		}
		j.report(b.bytes, total)
	}
	return nil
}

func (j *job) report(done, total int64) {
	el := time.Since(j.start)
	rep := Report{Shard: j.o.Shard.String(), Counters: j.cp.Counters, BytesDone: done, BytesTotal: total, Elapsed: el}
	if s := el.Seconds(); s > 0 {
		rep.Rate = float64(j.cp.Counters.Embedded-j.base.Embedded) / s
	}
	j.o.Progress.Update(rep)
}
