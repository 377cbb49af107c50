package index

import (
	"context"
	"errors"
	"fmt"

	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/wal"
)

// Writes to both stores, directly or, in durable mode, through the WAL.

// write applies e to both stores, or queues it in durable mode. It reports
// whether e was queued.
func (x *Index) write(ctx context.Context, e *wal.Entry) (queued bool, err error) {
	if x.opts.WAL == nil {
		return false, x.Apply(ctx, e)
	}
	x.walMu.Lock()
	if x.opts.WAL.Pending() > 0 {
		defer x.walMu.Unlock()
		return true, x.opts.WAL.Append(e)
	}
	x.walMu.Unlock()
	err = x.Apply(ctx, e)
	if !errors.Is(err, store.ErrUnavailable) {
		return false, err
	}
	x.walMu.Lock()
	defer x.walMu.Unlock()
	if werr := x.opts.WAL.Append(e); werr != nil {
		return false, errors.Join(err, werr)
	}
	x.opts.Logger.Warn("index: store unavailable; write queued in the WAL", "collection", e.Collection, "err", err)
	return true, nil
}

// Apply writes e to both stores (the WAL replays through it): to e's
// version, or to the live one for an entry without a version (written
// before versions). Both are attempted; the error names each store that
// failed. A version dropped since e was accepted is store.ErrInvalid as
// well as store.ErrNotFound: the write can never succeed, so the WAL sets
// it aside instead of retrying it.
func (x *Index) Apply(ctx context.Context, e *wal.Entry) error {
	var verr, oerr error
	switch e.Kind {
	case wal.Upsert:
		if e.Version == "" {
			verr = x.opts.Vectors.Upsert(ctx, e.Collection, e.Records)
		} else {
			verr = x.vs.UpsertVersion(ctx, e.Collection, e.Version, e.Records)
		}
		if verr == nil || errors.Is(verr, store.ErrUnavailable) {
			oerr = x.opts.Online.SetEntities(ctx, e.Entities, e.TTL)
		}
	case wal.Delete:
		if e.Version == "" {
			verr = x.opts.Vectors.Delete(ctx, e.Collection, e.IDs)
		} else {
			verr = x.vs.DeleteVersion(ctx, e.Collection, e.Version, e.IDs)
		}
		if verr == nil || errors.Is(verr, store.ErrUnavailable) {
			oerr = x.opts.Online.DeleteEntities(ctx, e.EntityIDs)
		}
	default:
		return fmt.Errorf("%w: unknown WAL entry kind %d", store.ErrInvalid, e.Kind)
	}
	if e.Version != "" && errors.Is(verr, store.ErrNotFound) {
		verr = fmt.Errorf("%w: %w", store.ErrInvalid, verr)
	}
	if verr != nil {
		verr = fmt.Errorf("%s: %w", x.opts.VectorsName, verr)
	}
	if oerr != nil {
		oerr = fmt.Errorf("%s: %w", x.opts.OnlineName, oerr)
	}
	return errors.Join(verr, oerr)
}

// Run replays the WAL into the stores until ctx is done; without a WAL it
// returns at once.
func (x *Index) Run(ctx context.Context) error {
	if x.opts.WAL == nil {
		return nil
	}
	return x.opts.WAL.Run(ctx, x.Apply)
}

// Pending reports writes queued in the WAL (0 without one).
func (x *Index) Pending() int {
	if x.opts.WAL == nil {
		return 0
	}
	return x.opts.WAL.Pending()
}
