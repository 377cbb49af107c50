package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/embedd/embedd/internal/store"
)

// The live version of each collection and the model versions are bound
// to, as the index resolves them for every request.

// versionStore is what the index needs of its vector store.
type versionStore interface {
	store.Versioned
	store.VersionReader
}

// target is the collection version a request reads or writes: the
// collection as that version sees it (Dims, ModelVersion: the binding;
// Model: the name of a model with that version, "" when none is known),
// and the version's name.
type target struct {
	Collection
	Version string
	// Bound reports whether ModelVersion is a binding; false for an
	// unbound version with no embedded record yet, which any model may
	// write (ModelVersion is then the configured model's).
	Bound bool
	at    time.Time
}

// versionCache holds the resolved live versions and versions of the
// collections, and the model versions the index knows a model name of.
type versionCache struct {
	ttl time.Duration // <= 0: no caching

	// mu guards the maps.
	mu       sync.Mutex
	live     map[string]target            // collection -> its live version
	versions map[string]map[string]target // collection -> version -> target
	models   map[string]string            // model version -> model name
}

func newVersionCache(ttl time.Duration) *versionCache {
	return &versionCache{ttl: ttl, live: map[string]target{}, versions: map[string]map[string]target{}, models: map[string]string{}}
}

func (vc *versionCache) fresh(t target) bool { return vc.ttl > 0 && time.Since(t.at) < vc.ttl }

// forget drops what is cached about coll.
func (vc *versionCache) forget(coll string) {
	vc.mu.Lock()
	delete(vc.live, coll)
	delete(vc.versions, coll)
	vc.mu.Unlock()
}

// sampleLimit bounds the records read to find the model version of an
// unbound version's records.
const sampleLimit = 1000

var errSampled = errors.New("index: sampled")

// live resolves c's live version, from the cache when it is fresh.
func (x *Index) live(ctx context.Context, c *Collection) (target, error) {
	x.vc.mu.Lock()
	t, ok := x.vc.live[c.Name]
	x.vc.mu.Unlock()
	if ok && x.vc.fresh(t) {
		return t, nil
	}
	info, err := x.vs.LiveVersion(ctx, c.Name)
	if err != nil {
		if ok && errors.Is(err, store.ErrUnavailable) {
			// The store cannot say now; the last resolution stands, so
			// writes still reach the WAL (durable) and the online store
			// still serves reads. A swap made during the outage is seen
			// when the store answers again.
			return t, nil
		}
		return target{}, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	if t, err = x.bind(ctx, c, info); err != nil {
		return target{}, err
	}
	x.vc.mu.Lock()
	x.vc.live[c.Name] = t
	x.vc.mu.Unlock()
	return t, nil
}

// version resolves c's version v ("" for the live one).
func (x *Index) version(ctx context.Context, c *Collection, v string) (target, error) {
	if v == "" {
		return x.live(ctx, c)
	}
	if err := store.CheckVersion(v); err != nil {
		return target{}, fmt.Errorf("%w: collection %q: %w", ErrInvalid, c.Name, err)
	}
	x.vc.mu.Lock()
	t, ok := x.vc.versions[c.Name][v]
	x.vc.mu.Unlock()
	if ok && x.vc.fresh(t) {
		return t, nil
	}
	infos, err := x.Versions(ctx, c.Name)
	if err != nil {
		if ok && errors.Is(err, store.ErrUnavailable) {
			return t, nil // as in live
		}
		return target{}, err
	}
	i := slices.IndexFunc(infos, func(i store.VersionInfo) bool { return i.Version == v })
	if i < 0 {
		return target{}, fmt.Errorf("%w: collection %q version %q (versions: %s)", store.ErrNotFound, c.Name, v, versionNames(infos))
	}
	if t, err = x.bind(ctx, c, infos[i]); err != nil {
		return target{}, err
	}
	x.vc.mu.Lock()
	if x.vc.versions[c.Name] == nil {
		x.vc.versions[c.Name] = map[string]target{}
	}
	x.vc.versions[c.Name][v] = t
	x.vc.mu.Unlock()
	return t, nil
}

func versionNames(infos []store.VersionInfo) string {
	names := make([]string, len(infos))
	for i, v := range infos {
		names[i] = v.Version
	}
	return strings.Join(names, ", ")
}

// bind makes the target of version info of c. An unbound version (created
// before versions were bound to models) is bound to the model version of
// its records: the first of its first sampleLimit records that was
// embedded from text; with none, it is unbound and the configured model
// writes it.
func (x *Index) bind(ctx context.Context, c *Collection, info store.VersionInfo) (target, error) {
	t := target{Collection: *c, Version: info.Version, Bound: true, at: time.Now()}
	t.Dims, t.ModelVersion = info.Dims, info.ModelVersion
	if t.ModelVersion == "" {
		n := 0
		err := x.vs.ScanVersion(ctx, c.Name, info.Version, func(r store.Record) error {
			if n++; r.ModelVersion != "" && r.ModelVersion != PrecomputedVersion {
				t.ModelVersion = r.ModelVersion
				return errSampled
			}
			if n >= sampleLimit {
				return errSampled
			}
			return nil
		})
		if err != nil && !errors.Is(err, errSampled) {
			return target{}, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
		}
		if t.ModelVersion == "" {
			t.ModelVersion, t.Bound = c.ModelVersion, false
		}
	}
	t.Model = x.modelName(t.ModelVersion)
	return t, nil
}

// modelName returns the name of a model whose version is v: a configured
// collection's model, one named to CreateVersion, or any the Embedder
// lists (engine.Engine lists its catalog); "" when none is known.
func (x *Index) modelName(v string) string {
	x.vc.mu.Lock()
	name, ok := x.vc.models[v]
	x.vc.mu.Unlock()
	if ok {
		return name
	}
	lister, ok := x.emb.(interface{ Models() []string })
	if !ok {
		return ""
	}
	for _, n := range lister.Models() {
		if m, err := x.emb.Manifest(n); err == nil && m.Version == v {
			x.learnModel(v, n)
			return n
		}
	}
	return ""
}

func (x *Index) learnModel(version, name string) {
	x.vc.mu.Lock()
	x.vc.models[version] = name
	x.vc.mu.Unlock()
}

// withLive runs read on c's live version; when the version is gone (the
// cache named a version dropped since), it resolves the live version
// afresh and runs read once more.
func (x *Index) withLive(ctx context.Context, c *Collection, read func(t target) error) error {
	t, err := x.live(ctx, c)
	if err != nil {
		return err
	}
	if err = read(t); !errors.Is(err, store.ErrNotFound) {
		return err
	}
	x.vc.forget(c.Name)
	if t, err = x.live(ctx, c); err != nil {
		return err
	}
	return read(t)
}

// writeModel checks that an upsert into t may embed with model (a model
// name and its version): t must be bound to that model version, or
// unbound.
func (t target) writeModel(model, modelVersion string) error {
	if !t.Bound || t.ModelVersion == modelVersion {
		return nil
	}
	bound := fmt.Sprintf("%q", t.ModelVersion)
	if t.Model != "" {
		bound += fmt.Sprintf(" (model %q)", t.Model)
	}
	return fmt.Errorf("%w: collection %q version %q is bound to model version %s; this upsert embeds with model %q (version %q): to move the collection to that model, re-embed it into a new version with `embedd reembed`; else configure the collection with its bound model",
		ErrModelMismatch, t.Name, t.Version, bound, model, modelVersion)
}

// embedModel returns the model that embeds texts for t; instead names what
// the caller can do when this process has none.
func (t target) embedModel(instead string) (string, error) {
	if t.Model == "" {
		return "", fmt.Errorf("%w: collection %q version %q is bound to model version %q, which no model of this process provides: add a model of that version to the catalog, or %s",
			ErrModelMismatch, t.Name, t.Version, t.ModelVersion, instead)
	}
	return t.Model, nil
}

// OnlineKey is the online-store id of record id in collection's version:
// "<collection>/<id>" for DefaultVersion (the key rows had before
// versions) and "<collection>@<version>/<id>" for any other.
func OnlineKey(collection, version, id string) string {
	if version == "" || version == store.DefaultVersion {
		return collection + "/" + id
	}
	return collection + "@" + version + "/" + id
}

// onlineKeys maps record ids of coll's version to their online-store ids.
func onlineKeys(coll, version string, ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = OnlineKey(coll, version, id)
	}
	return out
}
