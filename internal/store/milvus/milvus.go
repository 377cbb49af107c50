// Package milvus implements store.Vectors on a Milvus server (2.3 or later)
// through github.com/milvus-io/milvus-sdk-go/v2.
//
// Layout: a logical collection ("docs") is an alias that points at one
// physical collection per version ("docs__v2"); it implements
// store.Versioned. A new version is created with CreateVersion, filled with
// UpsertVersion beside the live one, and made live with SwapAlias, which
// Milvus applies atomically: a search sees either the old or the new
// collection, never a mix. EnsureCollection creates version DefaultVersion
// and points the alias at it when the alias is absent.
//
// Every physical collection has the fields
//
//	id            VarChar(256), primary key (no auto id)
//	vector        FloatVector(dims), indexed (Options.Index, Options.Metric)
//	metadata      JSON (an empty Record.Metadata is stored as {})
//	model_version VarChar(256)
//	updated_at    Int64, unix milliseconds
//	text_hash     VarChar(128) (versions created before it existed lack it:
//	              their records are written and read without TextHash)
//
// and the collection properties embedd.collection, embedd.version,
// embedd.model_version (the binding) and embedd.created_at (unix ms), set
// at creation (Milvus 2.3 keeps properties with the collection and returns
// them from DescribeCollection). A collection created before versions were
// bound has none: it is identified by its description ("embedd "docs"
// version "v1"") and is unbound.
//
// ScanVersion pages by primary key: a Query for `id > "<last id>"` with a
// limit returns the smallest ids above the last one in ascending order
// (Milvus merges the segments' results by primary key; the SDK's
// QueryIterator relies on the same, but writes the last id into the
// expression unescaped, which breaks on an id holding a quote, so it is
// not used). Each page is checked to ascend past the previous one.
//
// Invariants: Upsert checks the whole batch against the data model
// (store.CheckRecords: ids, dims, finite values, JSON-object metadata; and
// this backend's model-version length) before it sends anything, trusting
// its caller (internal/index) for request limits, and sends the batch as
// one Milvus Upsert request, which Milvus applies as one delete+insert
// message pack, so an invalid batch writes nothing. Reads use
// Options.Consistency (default Strong: a Get or Search sees every write
// acknowledged before it started, from any client, at the cost of one
// Milvus time tick per read; Bounded is the documented fast alternative).
// Scores are Milvus's similarity (COSINE or IP: higher is
// nearer); hits are ordered by score descending, ties by id ascending.
//
// Filters are Milvus boolean expressions passed through unchanged, over the
// fields above, e.g. `metadata["lang"] == "en" && updated_at > 1700000000000`.
// Milvus rejecting one yields store.ErrInvalid with Milvus's reason.
//
// Concurrency: a *Store is safe for concurrent use; it holds one gRPC
// connection. The logical-to-physical mapping is cached; SwapAlias through
// the same *Store updates it at once, a swap made by another process is seen
// after Options.AliasTTL.
package milvus

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/backoff"

	"google.golang.org/grpc/credentials"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"
	"google.golang.org/grpc"

	"github.com/embedd/embedd/internal/store"
)

var _ store.Vectors = (*Store)(nil)

// Field names of every physical collection.
const (
	fieldID           = "id"
	fieldVector       = "vector"
	fieldMetadata     = "metadata"
	fieldModelVersion = "model_version"
	fieldUpdatedAt    = "updated_at"
	fieldTextHash     = "text_hash"
)

// Index kinds.
const (
	IndexHNSW   = "HNSW"
	IndexIVFSQ8 = "IVF_SQ8"
)

// Metrics.
const (
	MetricCosine = "COSINE"
	MetricIP     = "IP"
)

// Consistency levels for reads (Milvus's names).
const (
	ConsistencyStrong  = "Strong"
	ConsistencySession = "Session"
	ConsistencyBounded = "Bounded"
)

// Options configures a Store. The zero value of a field means its default.
type Options struct {
	// Address is the Milvus gRPC endpoint, host:port. Default
	// "127.0.0.1:19530".
	Address string
	// DialTimeout bounds connecting in New. Default 5s.
	DialTimeout time.Duration
	// CallTimeout bounds every call to Milvus: a call whose context has no
	// earlier deadline gets this one, so a hung server fails the request
	// (store.ErrUnavailable) instead of holding it. Default 30s (an index
	// build or a load of a large collection takes seconds).
	CallTimeout time.Duration
	// Username and Password authenticate to a Milvus with
	// authorizationEnabled (both empty: none). TLS connects over TLS
	// (Milvus's tlsMode 1, server verified against the system roots).
	// TLSConfig, when set, connects over TLS with it instead: a private CA
	// (RootCAs), a client certificate for Milvus's tlsMode 2 (mutual TLS),
	// a server name.
	Username, Password string
	TLS                bool
	TLSConfig          *tls.Config
	// Index is IndexHNSW (default) or IndexIVFSQ8; it applies to collections
	// created by this Store.
	Index string
	// Metric is MetricCosine (default) or MetricIP. With IP, vectors should
	// be normalized by the caller.
	Metric string
	// HNSWM is the HNSW graph degree M. Default 16.
	HNSWM int
	// HNSWEfConstruction is HNSW's build-time candidate list. Default 200.
	HNSWEfConstruction int
	// HNSWEf is HNSW's search-time candidate list; it is raised to top_k
	// when smaller. Default 128 (recall@10 0.930 at 64 and 0.999 at 256
	// over 100,000 embedding-like vectors, bench/stores/milvus).
	HNSWEf int
	// IVFNList is the number of IVF clusters. Default 1024.
	IVFNList int
	// IVFNProbe is the number of clusters searched. Default 16.
	IVFNProbe int
	// Consistency is the read consistency for Get and Search:
	//   - ConsistencyStrong (default): a read sees every write acknowledged
	//     to any client before it started. Milvus 2.3 implements it by
	//     waiting for the next time tick (proxy.timeTickInterval, 200 ms):
	//     measured p50 ~400 ms per search on the local server (see
	//     bench/stores/milvus).
	//   - ConsistencySession: read-your-writes for this Store, as far as the
	//     server reports write timestamps; Milvus 2.3.5 returns none for
	//     Delete (measured: a Get right after Delete still saw the rows), so
	//     with 2.3 it is close to Bounded.
	//   - ConsistencyBounded: may miss writes of the last few seconds; ~5 ms
	//     searches. Use it for serving where that staleness is acceptable.
	Consistency string
	// DefaultVersion names the physical collection EnsureCollection creates.
	// Default "v1".
	DefaultVersion string
	// AliasTTL is how long a resolved alias is trusted before it is looked up
	// again. Default 5s; negative means look it up on every call.
	AliasTTL time.Duration
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		Address:            "127.0.0.1:19530",
		DialTimeout:        5 * time.Second,
		CallTimeout:        30 * time.Second,
		Index:              IndexHNSW,
		Metric:             MetricCosine,
		HNSWM:              16,
		HNSWEfConstruction: 200,
		HNSWEf:             128,
		IVFNList:           1024,
		IVFNProbe:          16,
		Consistency:        ConsistencyStrong,
		DefaultVersion:     "v1",
		AliasTTL:           5 * time.Second,
	}
}

func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	o.Address = cmp.Or(o.Address, d.Address)
	o.DialTimeout = positive(o.DialTimeout, d.DialTimeout)
	o.CallTimeout = positive(o.CallTimeout, d.CallTimeout)
	o.Index = cmp.Or(o.Index, d.Index)
	o.Metric = cmp.Or(o.Metric, d.Metric)
	o.HNSWM = positive(o.HNSWM, d.HNSWM)
	o.HNSWEfConstruction = positive(o.HNSWEfConstruction, d.HNSWEfConstruction)
	o.HNSWEf = positive(o.HNSWEf, d.HNSWEf)
	o.IVFNList = positive(o.IVFNList, d.IVFNList)
	o.IVFNProbe = positive(o.IVFNProbe, d.IVFNProbe)
	o.Consistency = cmp.Or(o.Consistency, d.Consistency)
	o.DefaultVersion = cmp.Or(o.DefaultVersion, d.DefaultVersion)
	o.AliasTTL = cmp.Or(o.AliasTTL, d.AliasTTL) // negative: no cache
	switch o.Index {
	case IndexHNSW, IndexIVFSQ8:
	default:
		return o, fmt.Errorf("%w: milvus index %q; want %s or %s", store.ErrInvalid, o.Index, IndexHNSW, IndexIVFSQ8)
	}
	switch o.Metric {
	case MetricCosine, MetricIP:
	default:
		return o, fmt.Errorf("%w: milvus metric %q; want %s or %s", store.ErrInvalid, o.Metric, MetricCosine, MetricIP)
	}
	switch o.Consistency {
	case ConsistencyStrong, ConsistencySession, ConsistencyBounded:
	default:
		return o, fmt.Errorf("%w: milvus consistency %q", store.ErrInvalid, o.Consistency)
	}
	return o, nil
}

// Store is a store.Vectors on Milvus.
type Store struct {
	c    client.Client
	opts Options
	cl   entity.ConsistencyLevel

	// mu guards the caches: live maps a logical name to its live physical
	// collection, phys a physical collection's name to its description;
	// entries are trusted for Options.AliasTTL.
	mu   sync.Mutex
	live map[string]physical
	phys map[string]physical
}

// New connects to Milvus at opts.Address. An unreachable server is
// store.ErrUnavailable.
func New(ctx context.Context, opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	dial := []grpc.DialOption{grpc.WithChainUnaryInterceptor(callTimeout(opts.CallTimeout)),
		// Reconnect within seconds once Milvus is back: gRPC's default
		// backoff grows to 120 s, which kept a recovered Milvus unused
		// for 30 s after a 15 s outage.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second}, MinConnectTimeout: 5 * time.Second}),
		// Connect in New, and on failure say why (a TLS handshake error, a
		// refused connection) rather than only that the deadline passed.
		grpc.WithReturnConnectionError()}
	if opts.TLSConfig != nil {
		// The SDK sets its own credentials first (system roots when
		// EnableTLSAuth); a later WithTransportCredentials replaces them.
		dial = append(dial, grpc.WithTransportCredentials(credentials.NewTLS(opts.TLSConfig)))
	}
	c, err := client.NewClient(dctx, client.Config{
		Address: opts.Address, Username: opts.Username, Password: opts.Password,
		EnableTLSAuth: opts.TLS || opts.TLSConfig != nil, DialOptions: dial,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: milvus at %s: %v", store.ErrUnavailable, opts.Address, err)
	}
	cl := map[string]entity.ConsistencyLevel{
		ConsistencyStrong:  entity.ClStrong,
		ConsistencySession: entity.ClSession,
		ConsistencyBounded: entity.ClBounded,
	}[opts.Consistency]
	return &Store{c: c, opts: opts, cl: cl, live: map[string]physical{}, phys: map[string]physical{}}, nil
}

// callTimeout gives every unary call a deadline of at most d from now.
func callTimeout(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > d {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// Close closes the connection.
func (s *Store) Close() error { return s.c.Close() }

// positive returns v, or d when v is zero or negative.
func positive[T int | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}
