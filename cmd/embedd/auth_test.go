package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedd/embedd/internal/auth"
	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// authKeys writes a key file: "all" holds every scope but admin, and for
// each scope s a key "no-s" holds every scope but s and admin. It returns
// the path and the secret of each key id.
func authKeys(t *testing.T) (string, map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("keys:\n")
	secrets := map[string]string{}
	add := func(id string, scopes []auth.Scope) {
		secret, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		secrets[id] = secret
		var names []string
		for _, s := range scopes {
			names = append(names, string(s))
		}
		fmt.Fprintf(&b, "  - id: %s\n    sha256: %s\n    scopes: [%s]\n", id, auth.HashKey(secret), strings.Join(names, ", "))
	}
	nonAdmin := slices.DeleteFunc(slices.Clone(auth.Scopes), func(s auth.Scope) bool { return s == auth.ScopeAdmin })
	add("all", nonAdmin)
	for _, s := range nonAdmin {
		add("no-"+string(s), slices.DeleteFunc(slices.Clone(nonAdmin), func(x auth.Scope) bool { return x == s }))
	}
	path := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, secrets
}

// TestServeAuthEveryRPC calls every RPC of every embedd service, listed
// from the service descriptors, with no key (UNAUTHENTICATED), with a key
// lacking the RPC's scope (PERMISSION_DENIED) and with a good key (neither):
// an RPC added without a scope in auth.MethodScopes fails here. It also
// checks, through reflection, that no other service is served, and that
// health needs no key.
func TestServeAuthEveryRPC(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	path, secrets := authKeys(t)
	conn, stop := runServe(t, testServeConfig(t, "--auth-keys", path))
	defer stop()
	with := func(id string) context.Context {
		if id == "" {
			return context.Background()
		}
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+secrets[id])
	}
	call := func(ctx context.Context, method string, sd grpc.StreamDesc) error {
		if !sd.ServerStreams && !sd.ClientStreams {
			return conn.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
		}
		s, err := conn.NewStream(ctx, &sd, method)
		if err != nil {
			return err
		}
		s.SendMsg(&emptypb.Empty{})
		s.CloseSend()
		return s.RecvMsg(&emptypb.Empty{})
	}
	descs := []grpc.ServiceDesc{embeddv1.EmbeddingService_ServiceDesc, embeddv1.VectorService_ServiceDesc, embeddv1.FeatureService_ServiceDesc, embeddv1.JobService_ServiceDesc}
	var services []string
	for _, d := range descs {
		services = append(services, d.ServiceName)
		var methods []grpc.StreamDesc
		for _, m := range d.Methods {
			methods = append(methods, grpc.StreamDesc{StreamName: m.MethodName})
		}
		methods = append(methods, d.Streams...)
		for _, sd := range methods {
			method := "/" + d.ServiceName + "/" + sd.StreamName
			scope, ok := auth.MethodScopes[method]
			if !ok || scope == "" {
				t.Errorf("%s: no scope in auth.MethodScopes", method)
				continue
			}
			if c := status.Code(call(with(""), method, sd)); c != codes.Unauthenticated {
				t.Errorf("%s without a key: %v; want Unauthenticated", method, c)
			}
			if c := status.Code(call(with("no-"+string(scope)), method, sd)); c != codes.PermissionDenied {
				t.Errorf("%s with a key lacking %s: %v; want PermissionDenied", method, scope, c)
			}
			if err := call(with("all"), method, sd); status.Code(err) == codes.Unauthenticated || status.Code(err) == codes.PermissionDenied {
				t.Errorf("%s with a good key: %v", method, err)
			}
		}
	}
	// Reflection (any valid key) lists exactly these services besides
	// health and reflection.
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(with("all"))
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range resp.GetListServicesResponse().GetService() {
		if !slices.Contains(services, s.GetName()) && !strings.HasPrefix(s.GetName(), "grpc.") {
			t.Errorf("service %s is served but not covered by this test", s.GetName())
		}
	}
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health without a key: %v", err)
	}
}

// TestKeysNew: `keys new` appends an entry that serve loads, prints the key
// once, never writes it, and keeps the file 0600.
func TestKeysNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.yaml")
	var keys []string
	for _, id := range []string{"a", "b"} {
		out, err := runCLI(t, "", "keys", "new", "--id", id, "--scopes", "embed,vectors:read", "--file", path)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, strings.TrimSpace(out))
	}
	data, _ := os.ReadFile(path)
	for _, k := range keys {
		if !strings.HasPrefix(k, auth.KeyPrefix) || strings.Contains(string(data), k) || !strings.Contains(string(data), auth.HashKey(k)) {
			t.Errorf("key %q: file %q should hold its hash only", k, data)
		}
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v; want 0600", st.Mode().Perm())
	}
	if _, err := runCLI(t, "", "keys", "new", "--id", "c", "--scopes", "embed,fly", "--file", path); err == nil || !strings.Contains(err.Error(), `unknown scope "fly"`) {
		t.Errorf("unknown scope: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(data) {
		t.Errorf("a refused entry changed the file")
	}
	if _, err := auth.LoadKeys(path, nil); err != nil {
		t.Errorf("the key file does not load: %v", err)
	}
}

// TestServeSensitiveFeatures: a key without features:read:sensitive gets a
// sensitive feature's values null, with the reason in the trailer; a key
// with it gets the values.
func TestServeSensitiveFeatures(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	dir := t.TempDir()
	reg := `features:
  - {name: income_sum_1h, version: 1, entity: user, type: float, source: income, aggregation: sum, window: 1h, description: x, owner: o, sensitive: true}
  - {name: events_count_1h, version: 1, entity: user, type: int, source: events, aggregation: count, window: 1h, description: x, owner: o}
`
	if err := os.WriteFile(filepath.Join(dir, "f.yaml"), []byte(reg), 0o600); err != nil {
		t.Fatal(err)
	}
	reader, _ := auth.NewKey()
	trusted, _ := auth.NewKey()
	keys := fmt.Sprintf("keys:\n  - {id: reader, sha256: %s, scopes: [features:read, features:ingest]}\n  - {id: trusted, sha256: %s, scopes: [features:read, features:read:sensitive]}\n",
		auth.HashKey(reader), auth.HashKey(trusted))
	kpath := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(kpath, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	conn, stop := runServe(t, testServeConfig(t, "--auth-keys", kpath, "--features-dir", dir, "--allow-plaintext-sensitive"))
	defer stop()
	fc := embeddv1.NewFeatureServiceClient(conn)
	as := func(k string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "x-api-key", k)
	}
	res, err := fc.IngestEvents(as(reader), &embeddv1.IngestEventsRequest{Events: []*embeddv1.Event{
		{EntityId: "u", EventType: "pay", Timestamp: timestamppb.Now(), Values: map[string]float64{"income": 4200}}}})
	if err != nil || res.Accepted != 1 {
		t.Fatalf("ingest: %v %v", res, err)
	}
	req := &embeddv1.GetFeaturesRequest{EntityIds: []string{"u"}, Features: []string{"income_sum_1h", "events_count_1h"}}
	var trailer metadata.MD
	got, err := fc.GetFeatures(as(reader), req, grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	e := got.Entities[0]
	if !e.IsNull[0] || e.Values[0] != 0 || e.IsNull[1] || e.Values[1] != 1 || !strings.Contains(strings.Join(trailer.Get("embedd-withheld"), ""), "income_sum_1h") {
		t.Errorf("without the sensitive scope: %v, trailer %v; want income null and named, events 1", e, trailer)
	}
	got, err = fc.GetFeatures(as(trusted), req)
	if err != nil || got.Entities[0].IsNull[0] || got.Entities[0].Values[0] != 4200 {
		t.Errorf("with the sensitive scope: %v, %v; want 4200", got, err)
	}
}
