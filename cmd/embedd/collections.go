package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/reembed"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/models"
)

// `embedd collections list|swap|rollback|gc`: the versions of a collection
// and its alias.

// catalogOnly is the Embedder of commands that only need manifests (the
// collection's dims); they never embed.
type catalogOnly struct{ cat *manifest.Catalog }

func (c catalogOnly) Manifest(name string) (*manifest.Model, error) { return c.cat.Get(name) }

func (catalogOnly) Embed(context.Context, string, []string, engine.EmbedOptions) (*engine.Result, error) {
	return nil, errors.New("collections commands do not embed")
}

// openVersions opens collection's stores and index for a command that
// reads or swaps versions without embedding (collections, reembed
// finalize).
func openVersions(ctx context.Context, c *common, st *storeConfig, model, collection string, logger *slog.Logger) (*jobTarget, error) {
	cat, err := c.catalog()
	if err != nil {
		return nil, err
	}
	return openTarget(ctx, st, catalogOnly{cat}, model, []string{collection}, logger)
}

// collectionsConfig is every setting of the collections commands.
type collectionsConfig struct {
	common
	stores     storeConfig
	collection string
	model      string
	stateDir   string
	keep       int
}

const collectionsUsage = `list | swap VERSION | rollback | gc [--keep N]

  list       the collection's versions: model, dims, records, created, which one is live
  swap V     point the collection's alias at version V
  rollback   point the alias back at the version created before the live one
  gc         drop the versions the alias does not point at, but the newest --keep (and
             the target of an unfinished reembed job)`

func cmdCollections(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: collections needs list, swap, rollback or gc", errUsage)
	}
	sub := args[0]
	if sub == "-h" || sub == "--help" || sub == "-help" {
		fmt.Fprintf(os.Stderr, "Usage: embedd collections list|swap VERSION|rollback|gc [flags]\n%s\n", collectionsUsage)
		return flag.ErrHelp
	}
	var c collectionsConfig
	fs := newFlagSet("collections "+sub, collectionsUsage)
	c.common.register(fs)
	registerJobStores(fs, &c.stores)
	fs.StringVar(&c.collection, "collection", "default", "the collection")
	fs.StringVar(&c.model, "model", models.Default, "a model of the collection's dims (to open it)")
	fs.StringVar(&c.stateDir, "state-dir", "", "reembed state directory, whose unfinished job's version gc keeps (default <data-dir>/reembed)")
	fs.IntVar(&c.keep, "keep", 1, "gc: how many of the newest versions besides the live one to keep")
	if err := c.common.parse(fs, args[1:]); err != nil {
		return err
	}
	want := map[string]int{"list": 0, "swap": 1, "rollback": 0, "gc": 0}
	n, ok := want[sub]
	if !ok {
		return fmt.Errorf("%w: unknown collections command %q", errUsage, sub)
	}
	if fs.NArg() != n {
		return fmt.Errorf("%w: collections %s takes %d arguments; got %q", errUsage, sub, n, fs.Args())
	}
	if c.keep < 0 {
		return fmt.Errorf("%w: --keep %d must be >= 0", errUsage, c.keep)
	}
	t, err := openVersions(ctx, &c.common, &c.stores, c.model, c.collection, logger)
	if err != nil {
		return err
	}
	defer t.close()
	switch sub {
	case "list":
		return c.list(ctx, t.idx, stdout)
	case "swap":
		return c.swap(ctx, t.idx, fs.Arg(0), stdout)
	case "rollback":
		return c.rollback(ctx, t.idx, stdout)
	}
	return c.gc(ctx, t.idx, stdout)
}

func (c *collectionsConfig) list(ctx context.Context, x *index.Index, w io.Writer) error {
	vs, err := x.Versions(ctx, c.collection)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tMODEL_VERSION\tDIMS\tRECORDS\tCREATED\tLIVE")
	for _, v := range vs {
		live, created := "", "-"
		if v.Live {
			live = "*"
		}
		if !v.CreatedAt.IsZero() {
			created = v.CreatedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", v.Version, orDash(v.ModelVersion), v.Dims, v.Count, created, live)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *collectionsConfig) swap(ctx context.Context, x *index.Index, version string, w io.Writer) error {
	if err := x.SwapAlias(ctx, c.collection, version); err != nil {
		return err
	}
	fmt.Fprintf(w, "alias %s -> %s\n", c.collection, version)
	return nil
}

// rollback swaps to the newest version created before the live one.
func (c *collectionsConfig) rollback(ctx context.Context, x *index.Index, w io.Writer) error {
	vs, err := x.Versions(ctx, c.collection)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(vs, func(v store.VersionInfo) bool { return v.Live })
	if i < 0 {
		return fmt.Errorf("collection %q has no live version", c.collection)
	}
	// Versions are ordered by CreatedAt, then name.
	if i == 0 {
		return fmt.Errorf("collection %q: no version older than the live one (%s) to roll back to", c.collection, vs[i].Version)
	}
	return c.swap(ctx, x, vs[i-1].Version, w)
}

// gc drops the versions that are not live, but the newest --keep of them and
// the target of an unfinished reembed job of the collection.
func (c *collectionsConfig) gc(ctx context.Context, x *index.Index, w io.Writer) error {
	vs, err := x.Versions(ctx, c.collection)
	if err != nil {
		return err
	}
	stateDir := c.stateDir
	if stateDir == "" {
		stateDir = filepath.Join(c.stores.dir(), "reembed")
	}
	running, err := reembed.UnfinishedTarget(stateDir, c.collection)
	if err != nil {
		return err
	}
	kept := 0
	for i := len(vs) - 1; i >= 0; i-- { // newest first
		v := vs[i]
		switch {
		case v.Live:
			continue
		case v.Version == running:
			fmt.Fprintf(w, "kept %s (an unfinished reembed job writes it)\n", v.Version)
			continue
		case kept < c.keep:
			kept++
			continue
		}
		if err := x.DropVersion(ctx, c.collection, v.Version); err != nil {
			return fmt.Errorf("drop %s: %w", v.Version, err)
		}
		fmt.Fprintf(w, "dropped %s (%d records)\n", v.Version, v.Count)
	}
	return nil
}
