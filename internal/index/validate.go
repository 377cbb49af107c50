package index

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/embedd/embedd/internal/errlist"
	"github.com/embedd/embedd/internal/quant"
	"github.com/embedd/embedd/internal/store"
)

// The validation of the vectors flow's requests: each check runs once,
// here, before anything is embedded or written. The data-model rules come
// from package store (CheckID, CheckFinite, CheckMetadata, CheckTopK);
// their errors are wrapped, never re-worded by editing their text.

// ItemError is the failure of one item.
type ItemError struct {
	Index int
	ID    string
	Err   error
}

func (e *ItemError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("items[%d]: %v", e.Index, e.Err)
	}
	return fmt.Sprintf("items[%d] (%q): %v", e.Index, e.ID, e.Err)
}
func (e *ItemError) Unwrap() error { return e.Err }

// InputError lists every bad item of a call; it matches ErrInvalid.
type InputError struct{ Items []*ItemError }

func (e *InputError) Error() string { return errlist.Format("item", e.Items) }

func (e *InputError) Is(target error) bool { return target == ErrInvalid }

// validateItems checks every item of an Upsert into c; it returns an
// *InputError listing all bad ones, or an error about the request as a
// whole.
func (l Limits) validateItems(c *Collection, items []Item) error {
	if len(items) == 0 {
		return fmt.Errorf("%w: no items", ErrInvalid)
	}
	if len(items) > l.MaxItems {
		return fmt.Errorf("%w: %d items; limit %d", ErrInvalid, len(items), l.MaxItems)
	}
	var bad []*ItemError
	seen := make(map[string]int, len(items))
	for i, it := range items {
		if err := store.CheckID(it.ID); err != nil {
			bad = append(bad, &ItemError{Index: i, Err: itemIDError(err)})
			continue
		}
		if j, dup := seen[it.ID]; dup {
			bad = append(bad, &ItemError{Index: i, ID: it.ID, Err: fmt.Errorf("id repeats items[%d]", j)})
			continue
		}
		seen[it.ID] = i
		if err := l.checkItem(c, it); err != nil {
			bad = append(bad, &ItemError{Index: i, ID: it.ID, Err: err})
		}
	}
	if len(bad) > 0 {
		return &InputError{Items: bad}
	}
	return nil
}

// itemIDError words a bad item id: its length against the range, or the
// reason.
func itemIDError(err error) error {
	var e *store.IDError
	if errors.As(err, &e) && !e.BadUTF8 {
		return fmt.Errorf("id is %d bytes; limit 1 to %d", e.Bytes, e.Limit)
	}
	return fmt.Errorf("id %w", err)
}

// checkItem checks one item with a valid id: exactly one of text and
// vector, the vector's dims and values, metadata and features.
func (l Limits) checkItem(c *Collection, it Item) error {
	switch {
	case it.Text != "" && len(it.Vector) > 0:
		return errors.New("has both text and vector; send one")
	case it.Text == "" && len(it.Vector) == 0:
		return errors.New("has neither text nor vector")
	case len(it.Vector) > 0 && len(it.Vector) != c.Dims:
		return fmt.Errorf("vector has %d dimensions; collection %q has %d", len(it.Vector), c.Name, c.Dims)
	}
	if err := store.CheckFinite(it.Vector); err != nil {
		return fmt.Errorf("vector %w", err)
	}
	if len(it.Vector) > 0 && quant.Norm(it.Vector) == 0 {
		return errors.New("vector is all zeros; cosine is undefined")
	}
	if err := store.CheckMetadata(it.Metadata); err != nil {
		return err
	}
	return l.checkFeatures(it.Features)
}

// checkFeatures checks the feature values of an item or query: at most
// MaxFeatures, names of 1 to MaxFeatureName bytes, finite values.
func (l Limits) checkFeatures(f map[string]float64) error {
	if len(f) > l.MaxFeatures {
		return fmt.Errorf("%d features; limit %d", len(f), l.MaxFeatures)
	}
	for _, k := range slices.Sorted(maps.Keys(f)) {
		v := f[k]
		switch {
		case k == "" || len(k) > l.MaxFeatureName:
			return fmt.Errorf("feature name %q must be 1 to %d bytes", k, l.MaxFeatureName)
		case math.IsNaN(v) || math.IsInf(v, 0):
			return fmt.Errorf("feature %q is %v", k, v)
		}
	}
	return nil
}

// checkIDs checks the ids of a Get, Delete or UpsertHybrid: 1 to MaxItems,
// each per store.CheckID.
func (l Limits) checkIDs(ids []string) error {
	switch {
	case len(ids) == 0:
		return fmt.Errorf("%w: no ids", ErrInvalid)
	case len(ids) > l.MaxItems:
		return fmt.Errorf("%w: %d ids; limit %d", ErrInvalid, len(ids), l.MaxItems)
	}
	for i, id := range ids {
		if err := store.CheckID(id); err != nil {
			return fmt.Errorf("%w: ids[%d] %w", ErrInvalid, i, err)
		}
	}
	return nil
}

// checkQuery checks a search on c; hybrid says c stands for a hybrid
// collection (then c.Dims are its base's, the dims of query vectors).
func (l Limits) checkQuery(c *Collection, hybrid bool, q Query) error {
	if len(q.Features) > 0 && !hybrid {
		return fmt.Errorf("%w: features are only used on hybrid collections; %q is not one", ErrInvalid, c.Name)
	}
	if err := l.checkFeatures(q.Features); err != nil {
		return fmt.Errorf("%w: query %v", ErrInvalid, err)
	}
	n := 0
	for _, set := range []bool{q.Text != "", len(q.Vector) > 0, q.ID != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: give exactly one of text, vector and id (got %d)", ErrInvalid, n)
	}
	if err := store.CheckTopK(q.TopK); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	switch {
	case len(q.Filter) > l.MaxFilterBytes:
		return fmt.Errorf("%w: filter is %d bytes; limit %d", ErrInvalid, len(q.Filter), l.MaxFilterBytes)
	case q.Oversample < 0 || q.Oversample > l.MaxOversample:
		return fmt.Errorf("%w: oversample %d out of range [0, %d]", ErrInvalid, q.Oversample, l.MaxOversample)
	case len(q.Vector) > 0 && len(q.Vector) != c.Dims:
		return fmt.Errorf("%w: query vector has %d dimensions; collection %q has %d", ErrInvalid, len(q.Vector), c.Name, c.Dims)
	}
	if err := store.CheckFinite(q.Vector); err != nil {
		return fmt.Errorf("%w: query vector %w", ErrInvalid, err)
	}
	if q.ID != "" {
		if err := store.CheckID(q.ID); err != nil {
			return fmt.Errorf("%w: ids[0] %w", ErrInvalid, err)
		}
	}
	if !hybrid && len(q.Vector) > 0 && quant.Norm(q.Vector) == 0 {
		return fmt.Errorf("%w: query vector is all zeros", ErrInvalid)
	}
	return nil
}
