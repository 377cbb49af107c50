// Package auth authenticates embedd's gRPC calls by API key (or by a
// verified mutual-TLS client certificate) and authorizes each by scope.
//
// Invariants:
//   - Deny by default: once a key file is configured, every RPC needs a
//     principal, and an RPC whose full method name has no entry in
//     MethodScopes is refused PERMISSION_DENIED, so a method added later
//     without a scope cannot be called (a test builds the list of RPCs from
//     the service descriptors and fails on any method missing here). Only
//     the health service is open (OpenMethods).
//   - Keys are never stored or logged: the key file holds the SHA-256 of
//     each key (keys are random 256-bit tokens made by `embedd keys new`,
//     so a fast hash is enough: there is nothing to brute-force), and logs
//     and the audit trail name a key by its id.
//   - No key: UNAUTHENTICATED. A valid key without the scope, or outside
//     its collections or feature sets: PERMISSION_DENIED naming the scope
//     or the resource. Over its rate or concurrency: RESOURCE_EXHAUSTED
//     with a RetryInfo hint.
//   - The key file is re-read when it changes (checked at most once a
//     second, on a call); a file that does not load keeps the previous
//     keys and is logged.
//
// Keys travel in the request metadata as "authorization: Bearer <key>" or
// "x-api-key: <key>".
package auth

import "context"

// Scope is a permission a key can hold.
type Scope string

// The scopes.
const (
	ScopeEmbed                 Scope = "embed"
	ScopeVectorsRead           Scope = "vectors:read"
	ScopeVectorsWrite          Scope = "vectors:write"
	ScopeFeaturesRead          Scope = "features:read"
	ScopeFeaturesReadSensitive Scope = "features:read:sensitive"
	ScopeFeaturesIngest        Scope = "features:ingest"
	ScopeJobs                  Scope = "jobs"
	ScopeAdmin                 Scope = "admin"
)

// Scopes lists every scope, for validation of the key file.
var Scopes = []Scope{ScopeEmbed, ScopeVectorsRead, ScopeVectorsWrite, ScopeFeaturesRead, ScopeFeaturesReadSensitive, ScopeFeaturesIngest, ScopeJobs, ScopeAdmin}

// MethodScopes is the scope each RPC needs, by full method name.
var MethodScopes = map[string]Scope{
	"/embedd.v1.EmbeddingService/Embed":       ScopeEmbed,
	"/embedd.v1.EmbeddingService/EmbedStream": ScopeEmbed,
	"/embedd.v1.EmbeddingService/ListModels":  ScopeEmbed,
	"/embedd.v1.EmbeddingService/GetModel":    ScopeEmbed,

	"/embedd.v1.VectorService/Upsert":          ScopeVectorsWrite,
	"/embedd.v1.VectorService/UpsertHybrid":    ScopeVectorsWrite,
	"/embedd.v1.VectorService/Delete":          ScopeVectorsWrite,
	"/embedd.v1.VectorService/Search":          ScopeVectorsRead,
	"/embedd.v1.VectorService/Get":             ScopeVectorsRead,
	"/embedd.v1.VectorService/ListCollections": ScopeVectorsRead,

	"/embedd.v1.FeatureService/IngestEvents":    ScopeFeaturesIngest,
	"/embedd.v1.FeatureService/GetFeatures":     ScopeFeaturesRead,
	"/embedd.v1.FeatureService/ListFeatures":    ScopeFeaturesRead,
	"/embedd.v1.FeatureService/GetFeatureStats": ScopeFeaturesRead,

	"/embedd.v1.JobService/StartReembed": ScopeJobs,
	"/embedd.v1.JobService/GetJob":       ScopeJobs,
	"/embedd.v1.JobService/ListJobs":     ScopeJobs,
	"/embedd.v1.JobService/CancelJob":    ScopeJobs,

	// Reflection shows the API's shape: any authenticated key may use it.
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      "",
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "",
}

// OpenMethods need no key: health checks come from load balancers and
// orchestrators.
var OpenMethods = map[string]bool{
	"/grpc.health.v1.Health/Check": true,
	"/grpc.health.v1.Health/Watch": true,
	"/grpc.health.v1.Health/List":  true,
}

// Principal is the authenticated caller.
type Principal struct {
	// ID names the key (or the client certificate's entry) in logs.
	ID          string
	scopes      map[Scope]bool
	collections map[string]bool // nil: all
	featureSets map[string]bool // nil: all
}

// Has reports whether p holds s. A nil Principal (auth off) holds every
// scope.
func (p *Principal) Has(s Scope) bool {
	return p == nil || p.scopes[s] || p.scopes[ScopeAdmin]
}

// MayCollection reports whether p may use the collection.
func (p *Principal) MayCollection(name string) bool {
	return p == nil || p.collections == nil || p.collections[name]
}

// MayFeatureSet reports whether p may read the feature set ("" means a
// list of features, which a set-restricted key may not read).
func (p *Principal) MayFeatureSet(name string) bool {
	return p == nil || p.featureSets == nil || (name != "" && p.featureSets[name])
}

type ctxKey struct{}

// FromContext returns the call's principal; nil when auth is off.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}
