package reembed

import (
	"context"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/manifest"
)

// Embedder is what embeds a job's texts: the index (FromIndex) calls it
// for every upsert, at bulk priority. Two implementations:
//   - in process: *engine.Engine, this machine's engine;
//   - remote: *remote.Remote (internal/reembed/remote), a running server's
//     EmbedStream, which that server runs at bulk priority, so the job
//     yields its engine to the server's online requests.
//
// Either way the vectors are those of the model Manifest describes: the
// job binds its target version to that model version, and the index
// refuses a result of another version (index.ErrModelMismatch).
type Embedder interface {
	// Embed embeds texts with model; a per-text failure is an
	// *engine.InputError naming the bad texts by index.
	Embed(ctx context.Context, model string, texts []string, o engine.EmbedOptions) (*engine.Result, error)
	// Manifest describes model name: its version, dims and max_seq_len.
	Manifest(name string) (*manifest.Model, error)
}

var (
	_ Embedder       = (*engine.Engine)(nil)
	_ index.Embedder = Embedder(nil)
)
