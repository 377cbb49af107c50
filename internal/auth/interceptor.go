package auth

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Options configures the interceptors.
type Options struct {
	// Keys is the key file. Required.
	Keys *Keys
	// DefaultCollection is the collection a request naming none uses, for
	// keys restricted to collections.
	DefaultCollection string
	// Audit receives one structured entry per denied call, naming the key
	// by id, never the key. Default slog.Default().
	Audit *slog.Logger
}

// Interceptors returns the unary and stream server interceptors that
// authenticate and authorize every call (see the package doc).
func Interceptors(o Options) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	if o.Audit == nil {
		o.Audit = slog.Default()
	}
	a := &authorizer{o: o}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, release, err := a.authorize(ctx, info.FullMethod, req)
		if err != nil {
			return nil, err
		}
		defer release()
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, release, err := a.authorize(ss.Context(), info.FullMethod, nil)
		if err != nil {
			return err
		}
		defer release()
		return h(srv, &principalStream{ServerStream: ss, ctx: ctx})
	}
	return unary, stream
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

type authorizer struct{ o Options }

func noop() {}

// authorize returns ctx with the caller's principal and a release of its
// concurrency slot, or the status error that refuses the call. req is nil
// for streams (only the scope is checked).
func (a *authorizer) authorize(ctx context.Context, method string, req any) (context.Context, func(), error) {
	if OpenMethods[method] {
		return ctx, noop, nil
	}
	k := a.principal(ctx)
	if k == nil {
		return nil, nil, a.deny(ctx, method, "", codes.Unauthenticated, "missing or unknown API key: send metadata \"authorization: Bearer <key>\" or \"x-api-key: <key>\"")
	}
	scope, known := MethodScopes[method]
	switch {
	case !known:
		return nil, nil, a.deny(ctx, method, k.p.ID, codes.PermissionDenied, fmt.Sprintf("%s declares no scope: denied by default", method))
	case scope != "" && !k.p.Has(scope):
		return nil, nil, a.deny(ctx, method, k.p.ID, codes.PermissionDenied, fmt.Sprintf("key %q lacks scope %q for %s", k.p.ID, scope, method))
	}
	if msg := a.resource(k.p, req); msg != "" {
		return nil, nil, a.deny(ctx, method, k.p.ID, codes.PermissionDenied, msg)
	}
	release, err := a.admit(k)
	if err != nil {
		a.o.Audit.Warn("audit: call limited", "key", k.p.ID, "method", method, "reason", err.Error())
		return nil, nil, err
	}
	return NewContext(ctx, k.p), release, nil
}

// principal finds the caller's key: an API key in the metadata, else a
// verified client certificate's subject listed in the key file.
func (a *authorizer) principal(ctx context.Context) *key {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if secret, ok := strings.CutPrefix(v, "Bearer "); ok {
			return a.o.Keys.lookup(strings.TrimSpace(secret))
		}
	}
	if v := md.Get("x-api-key"); len(v) > 0 {
		return a.o.Keys.lookup(strings.TrimSpace(v[0]))
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			return a.o.Keys.lookupSubject(ti.State.VerifiedChains[0][0].Subject.CommonName)
		}
	}
	return nil
}

// Requests that name a collection or a feature set.
type (
	collectionRequest interface{ GetCollection() string }
	featureSetRequest interface {
		GetFeatureSet() string
		GetFeatures() []string
	}
)

// resource returns why p may not touch what req names, or "".
func (a *authorizer) resource(p *Principal, req any) string {
	if r, ok := req.(collectionRequest); ok {
		name := r.GetCollection()
		if name == "" {
			name = a.o.DefaultCollection
		}
		if !p.MayCollection(name) {
			return fmt.Sprintf("key %q may not use collection %q (allowed: %s)", p.ID, name, list(p.collections))
		}
	}
	if r, ok := req.(featureSetRequest); ok && !p.MayFeatureSet(r.GetFeatureSet()) {
		if r.GetFeatureSet() == "" {
			return fmt.Sprintf("key %q is restricted to feature sets (%s): name one in feature_set instead of listing features", p.ID, list(p.featureSets))
		}
		return fmt.Sprintf("key %q may not read feature set %q (allowed: %s)", p.ID, r.GetFeatureSet(), list(p.featureSets))
	}
	return ""
}

func list(m map[string]bool) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// admit applies k's rate and concurrency limits.
func (a *authorizer) admit(k *key) (func(), error) {
	if k.limiter != nil {
		r := k.limiter.Reserve()
		if d := r.Delay(); d > 0 {
			r.Cancel()
			return nil, exhausted(fmt.Sprintf("key %q is over its rate of %g requests/s", k.p.ID, k.entry.Rate), d.Seconds())
		}
	}
	if k.slots == nil {
		return noop, nil
	}
	select {
	case k.slots <- struct{}{}:
		return func() { <-k.slots }, nil
	default:
		return nil, exhausted(fmt.Sprintf("key %q has %d calls in flight; limit %d", k.p.ID, k.entry.Concurrency, k.entry.Concurrency), 0.05)
	}
}

func exhausted(msg string, retryAfter float64) error {
	st := status.New(codes.ResourceExhausted, msg)
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(secondsToDuration(retryAfter))}); err == nil {
		st = d
	}
	return st.Err()
}

func (a *authorizer) deny(ctx context.Context, method, keyID string, code codes.Code, msg string) error {
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	a.o.Audit.Warn("audit: call denied", "key", keyID, "method", method, "code", code.String(), "reason", msg, "peer", addr)
	return status.Error(code, msg)
}
