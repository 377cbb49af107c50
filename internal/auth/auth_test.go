package auth

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

func writeKeys(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fixture loads a key file with the given entries (YAML list items after
// "keys:"), each referring to a key by "{k:name}", which becomes its hash.
func fixture(t *testing.T, entries string, names ...string) (*Keys, map[string]string, string) {
	t.Helper()
	secrets := map[string]string{}
	for _, n := range names {
		k, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		secrets[n] = k
		entries = strings.ReplaceAll(entries, "{k:"+n+"}", HashKey(k))
	}
	path := filepath.Join(t.TempDir(), "keys.yaml")
	writeKeys(t, path, "keys:\n"+entries)
	keys, err := LoadKeys(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys, secrets, path
}

func callWith(t *testing.T, keys *Keys, secret, method string, req any) error {
	t.Helper()
	unary, _ := Interceptors(Options{Keys: keys, DefaultCollection: "docs"})
	ctx := context.Background()
	if secret != "" {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("x-api-key", secret))
	}
	_, err := unary(ctx, req, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, _ any) (any, error) {
		if FromContext(ctx) == nil {
			t.Errorf("%s: handler ran without a principal", method)
		}
		return nil, nil
	})
	return err
}

func TestRestrictions(t *testing.T) {
	keys, s, _ := fixture(t, `
  - id: rec
    sha256: {k:rec}
    scopes: [vectors:read, features:read]
    collections: [docs]
    feature_sets: [user_profile]
`, "rec")
	for _, tc := range []struct {
		method string
		req    any
		want   codes.Code
		msg    string
	}{
		{"/embedd.v1.VectorService/Search", &embeddv1.SearchRequest{}, codes.OK, ""}, // default collection docs
		{"/embedd.v1.VectorService/Search", &embeddv1.SearchRequest{Collection: "docs"}, codes.OK, ""},
		{"/embedd.v1.VectorService/Search", &embeddv1.SearchRequest{Collection: "secret"}, codes.PermissionDenied, `collection "secret"`},
		{"/embedd.v1.VectorService/Upsert", &embeddv1.UpsertRequest{Collection: "docs"}, codes.PermissionDenied, `lacks scope "vectors:write"`},
		{"/embedd.v1.FeatureService/GetFeatures", &embeddv1.GetFeaturesRequest{FeatureSet: "user_profile"}, codes.OK, ""},
		{"/embedd.v1.FeatureService/GetFeatures", &embeddv1.GetFeaturesRequest{FeatureSet: "fraud"}, codes.PermissionDenied, `feature set "fraud"`},
		{"/embedd.v1.FeatureService/GetFeatures", &embeddv1.GetFeaturesRequest{Features: []string{"x"}}, codes.PermissionDenied, "name one in feature_set"},
		{"/embedd.v1.Jobs/Unknown", nil, codes.PermissionDenied, "denied by default"},
	} {
		err := callWith(t, keys, s["rec"], tc.method, tc.req)
		if status.Code(err) != tc.want || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s %+v: %v; want %v containing %q", tc.method, tc.req, err, tc.want, tc.msg)
		}
	}
	if err := callWith(t, keys, "ek_wrong", "/embedd.v1.VectorService/Search", &embeddv1.SearchRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("unknown key: %v", err)
	}
}

func TestLimits(t *testing.T) {
	keys, s, _ := fixture(t, `
  - id: slow
    sha256: {k:slow}
    scopes: [embed]
    rate: 1
    burst: 2
  - id: narrow
    sha256: {k:narrow}
    scopes: [embed]
    concurrency: 1
`, "slow", "narrow")
	m := "/embedd.v1.EmbeddingService/Embed"
	for i := range 2 {
		if err := callWith(t, keys, s["slow"], m, nil); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	err := callWith(t, keys, s["slow"], m, nil)
	st := status.Convert(err)
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if st.Code() != codes.ResourceExhausted || retry == nil || retry.GetRetryDelay().AsDuration() <= 0 || retry.GetRetryDelay().AsDuration() > time.Second {
		t.Errorf("over the rate: %v (retry %v); want ResourceExhausted with a RetryInfo of at most 1s", err, retry)
	}
	// Concurrency: a call in flight holds the only slot.
	unary, _ := Interceptors(Options{Keys: keys})
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+s["narrow"]))
	inside, release := make(chan struct{}), make(chan struct{})
	go unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: m}, func(context.Context, any) (any, error) {
		close(inside)
		<-release
		return nil, nil
	})
	<-inside
	if err := callWith(t, keys, s["narrow"], m, nil); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("second concurrent call: %v; want ResourceExhausted", err)
	}
	close(release)
	time.Sleep(10 * time.Millisecond)
	if err := callWith(t, keys, s["narrow"], m, nil); err != nil {
		t.Errorf("after the first call ended: %v", err)
	}
}

func TestReloadAndFileErrors(t *testing.T) {
	keys, s, path := fixture(t, "  - {id: a, sha256: {k:a}, scopes: [embed]}\n", "a")
	clock := time.Now()
	keys.now = func() time.Time { return clock }
	m := "/embedd.v1.EmbeddingService/Embed"
	b, _ := NewKey()
	writeKeys(t, path, fmt.Sprintf("keys:\n  - {id: b, sha256: %s, scopes: [embed]}\n", HashKey(b)))
	clock = clock.Add(2 * time.Second)
	if err := callWith(t, keys, b, m, nil); err != nil {
		t.Errorf("new key after reload: %v", err)
	}
	if err := callWith(t, keys, s["a"], m, nil); status.Code(err) != codes.Unauthenticated {
		t.Errorf("removed key after reload: %v", err)
	}
	writeKeys(t, path, "keys: [{id: c, sha256: zz, scopes: [embed]}]\nxx")
	clock = clock.Add(2 * time.Second)
	if err := callWith(t, keys, b, m, nil); err != nil {
		t.Errorf("a broken file must keep the loaded keys: %v", err)
	}
	for body, want := range map[string]string{
		"keys: [{id: a, sha256: 00, scopes: [embed]}]":                                                                           "64 hex digits",
		"keys: [{id: a, sha256: " + HashKey("x") + ", scopes: [fly]}]":                                                           `unknown scope "fly"`,
		"keys: [{id: a, sha256: " + HashKey("x") + ", scopes: []}]":                                                              "no scopes",
		"keys: [{id: a, sha256: " + HashKey("x") + ", scopes: [embed], oops: 1}]":                                                "oops",
		"keys: [{id: a, sha256: " + HashKey("x") + ", scopes: [embed]}, {id: a, sha256: " + HashKey("y") + ", scopes: [embed]}]": "repeated",
	} {
		if err := CheckKeyFile([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want an error containing %q", body, err, want)
		}
	}
	os.Chmod(path, 0o644)
	if _, err := LoadKeys(path, nil); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key file: %v; want refused", err)
	}
}

func TestPrincipalScopes(t *testing.T) {
	var none *Principal
	if !none.Has(ScopeFeaturesReadSensitive) || !none.MayCollection("x") || !none.MayFeatureSet("") {
		t.Error("auth off (nil principal) must allow everything")
	}
	admin := &Principal{scopes: map[Scope]bool{ScopeAdmin: true}}
	if !admin.Has(ScopeVectorsWrite) {
		t.Error("admin must hold every scope")
	}
}
