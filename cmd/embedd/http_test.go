package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/embedd/embedd/internal/auth"
	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tlsconf/tlsconftest"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// runServeHTTP starts serve with the HTTP API on a free loopback port; it
// returns the API's base URL, a gRPC connection to the same server and a
// stop function.
func runServeHTTP(t *testing.T, args ...string) (string, *grpc.ClientConn, func()) {
	t.Helper()
	base, conn, _, stop := runServeHTTPMetrics(t, args...)
	return base, conn, stop
}

// runServeHTTPMetrics is runServeHTTP that also returns the metrics
// address.
func runServeHTTPMetrics(t *testing.T, args ...string) (string, *grpc.ClientConn, string, func()) {
	t.Helper()
	c := testServeConfig(t, append([]string{"--http-addr", "127.0.0.1:0"}, args...)...)
	addr := make(chan string, 1)
	c.http.listening = func(a string) { addr <- a }
	conn, metricsAddr, stop := runServeMetrics(t, c)
	return "http://" + <-addr, conn, metricsAddr, stop
}

// httpReply is one HTTP response, its body decoded as JSON when it is.
type httpReply struct {
	code   int
	header http.Header
	body   []byte
}

func (r httpReply) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("reply %d %s: %v", r.code, r.body, err)
	}
}

// errorText is the message of any of the three error shapes.
func (r httpReply) errorText() string {
	var openAI struct {
		Error struct{ Message string } `json:"error"`
	}
	if json.Unmarshal(r.body, &openAI) == nil && openAI.Error.Message != "" {
		return openAI.Error.Message
	}
	var other struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	json.Unmarshal(r.body, &other)
	return other.Message + other.Error
}

func httpDo(t *testing.T, hc *http.Client, method, url, key, body string) httpReply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpReply{code: resp.StatusCode, header: resp.Header, body: b}
}

func httpPost(t *testing.T, url, key, body string) httpReply {
	t.Helper()
	return httpDo(t, nil, http.MethodPost, url, key, body)
}

// TestHTTPAuthEveryRPC: every unary RPC of every service has a JSON route
// that goes through the gRPC auth interceptor: no key 401, a key without
// the RPC's scope 403, a good key neither. Streaming RPCs have no route.
// The OpenAI and TEI routes need the embed scope; health needs no key; a
// key over its rate gets 429 with Retry-After.
func TestHTTPAuthEveryRPC(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	path, secrets := authKeys(t)
	slow, _ := auth.NewKey()
	keyFile, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keyFile = fmt.Appendf(keyFile, "  - {id: slow, sha256: %s, scopes: [embed], rate: 0.5, burst: 1}\n", auth.HashKey(slow))
	if err := os.WriteFile(path, keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	base, _, stop := runServeHTTP(t, "--auth-keys", path)
	defer stop()
	descs := []grpc.ServiceDesc{embeddv1.EmbeddingService_ServiceDesc, embeddv1.VectorService_ServiceDesc, embeddv1.FeatureService_ServiceDesc, embeddv1.JobService_ServiceDesc}
	for _, d := range descs {
		for _, m := range d.Methods {
			method := "/" + d.ServiceName + "/" + m.MethodName
			scope := auth.MethodScopes[method]
			var e struct{ Code string }
			r := httpPost(t, base+method, "", "{}")
			if r.json(t, &e); r.code != http.StatusUnauthorized || e.Code != "unauthenticated" {
				t.Errorf("%s without a key: %d %s; want 401 unauthenticated", method, r.code, r.body)
			}
			r = httpPost(t, base+method, secrets["no-"+string(scope)], "{}")
			if r.json(t, &e); r.code != http.StatusForbidden || e.Code != "permission_denied" {
				t.Errorf("%s with a key lacking %s: %d %s; want 403 permission_denied", method, scope, r.code, r.body)
			}
			if r = httpPost(t, base+method, secrets["all"], "{}"); r.code == http.StatusUnauthorized || r.code == http.StatusForbidden {
				t.Errorf("%s with a good key: %d %s", method, r.code, r.body)
			}
		}
		for _, s := range d.Streams {
			if r := httpPost(t, base+"/"+d.ServiceName+"/"+s.StreamName, secrets["all"], "{}"); r.code != http.StatusNotFound {
				t.Errorf("streaming %s: %d; want 404 (gRPC only)", s.StreamName, r.code)
			}
		}
	}
	embed := `{"input":"hello","model":"all-minilm-l6-v2-int8"}`
	for _, tc := range []struct {
		key, typ string
		code     int
	}{
		{"", "authentication_error", http.StatusUnauthorized},
		{"ek_unknown", "authentication_error", http.StatusUnauthorized},
		{secrets["no-embed"], "permission_error", http.StatusForbidden},
		{secrets["all"], "", http.StatusOK},
	} {
		r := httpPost(t, base+"/v1/embeddings", tc.key, embed)
		var e struct{ Error struct{ Type string } }
		if r.json(t, &e); r.code != tc.code || e.Error.Type != tc.typ {
			t.Errorf("/v1/embeddings with key %.8q: %d %s; want %d %q", tc.key, r.code, r.body, tc.code, tc.typ)
		}
	}
	if r := httpPost(t, base+"/embed", "", `{"inputs":"hello"}`); r.code != http.StatusUnauthorized {
		t.Errorf("/embed without a key: %d %s; want 401", r.code, r.body)
	}
	if r := httpDo(t, nil, http.MethodGet, base+"/v1/models", "", ""); r.code != http.StatusUnauthorized {
		t.Errorf("/v1/models without a key: %d %s; want 401", r.code, r.body)
	}
	if r := httpDo(t, nil, http.MethodGet, base+"/v1/models", secrets["all"], ""); r.code != http.StatusOK {
		t.Errorf("/v1/models: %d %s", r.code, r.body)
	}
	if r := httpPost(t, base+"/grpc.health.v1.Health/Check", "", "{}"); r.code != http.StatusOK || !strings.Contains(string(r.body), "SERVING") {
		t.Errorf("health without a key: %d %s; want 200 SERVING", r.code, r.body)
	}
	// rate 0.5/s, burst 1: the second call in a row is over the rate.
	if r := httpPost(t, base+"/v1/embeddings", slow, embed); r.code != http.StatusOK {
		t.Fatalf("first call of the slow key: %d %s", r.code, r.body)
	}
	r := httpPost(t, base+"/v1/embeddings", slow, embed)
	var e struct {
		Error struct{ Type, Message string }
	}
	if r.json(t, &e); r.code != http.StatusTooManyRequests || e.Error.Type != "rate_limit_error" || r.header.Get("Retry-After") != "2" ||
		!strings.Contains(e.Error.Message, `key "slow" is over its rate of 0.5 requests/s`) {
		t.Errorf("second call of the slow key: %d Retry-After %q %s; want 429 rate_limit_error, Retry-After 2", r.code, r.header.Get("Retry-After"), r.body)
	}
}

// f32 decodes base64 little-endian float32s.
func f32(t *testing.T, s string) []float32 {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b)%4 != 0 {
		t.Fatalf("base64 embedding: %d bytes, %v", len(b), err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// sameVectors reports the first difference between got and want, bit for
// bit, or "".
func sameVectors(got [][]float32, want []*embeddv1.Embedding) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d vectors; want %d", len(got), len(want))
	}
	for i := range got {
		w := want[i].GetFloat32()
		if len(got[i]) != len(w) {
			return fmt.Sprintf("vector %d has %d dims; want %d", i, len(got[i]), len(w))
		}
		for j := range w {
			if math.Float32bits(got[i][j]) != math.Float32bits(w[j]) {
				return fmt.Sprintf("vector %d dim %d is %v; want %v", i, j, got[i][j], w[j])
			}
		}
	}
	return ""
}

// TestHTTPMatchesGRPC: the OpenAI (float, base64, dimensions), TEI and
// generic JSON routes return exactly what gRPC returns from the same
// server; an Upsert over JSON is found by a gRPC Search and the JSON
// Search agrees with it.
func TestHTTPMatchesGRPC(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	base, conn, metricsAddr, stop := runServeHTTPMetrics(t, "--features=false")
	defer stop()
	ctx := context.Background()
	texts := []string{"The cat sleeps on the sofa.", "Bond yields rose after the central bank decision.", "ünïcödé ✓ \"quoted\""}
	ec := embeddv1.NewEmbeddingServiceClient(conn)
	want, err := ec.Embed(ctx, &embeddv1.EmbedRequest{Texts: texts})
	if err != nil {
		t.Fatal(err)
	}
	want64, err := ec.Embed(ctx, &embeddv1.EmbedRequest{Texts: texts, Dimensions: 64})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := json.Marshal(texts)
	type openAIReply struct {
		Object string
		Model  string
		Data   []struct {
			Object    string
			Index     int
			Embedding json.RawMessage
		}
		Usage struct {
			PromptTokens uint64 `json:"prompt_tokens"`
			TotalTokens  uint64 `json:"total_tokens"`
		}
	}
	call := func(extra string) ([][]float32, openAIReply) {
		t.Helper()
		r := httpPost(t, base+"/v1/embeddings", "", fmt.Sprintf(`{"input":%s,"model":"all-minilm-l6-v2-int8","user":"u1"%s}`, in, extra))
		if r.code != http.StatusOK {
			t.Fatalf("/v1/embeddings %s: %d %s", extra, r.code, r.body)
		}
		var rep openAIReply
		r.json(t, &rep)
		var vecs [][]float32
		for i, d := range rep.Data {
			if d.Index != i || d.Object != "embedding" {
				t.Errorf("data[%d]: index %d object %q", i, d.Index, d.Object)
			}
			var v []float32
			var s string
			if json.Unmarshal(d.Embedding, &s) == nil {
				v = f32(t, s)
			} else if err := json.Unmarshal(d.Embedding, &v); err != nil {
				t.Fatal(err)
			}
			vecs = append(vecs, v)
		}
		return vecs, rep
	}
	got, rep := call("")
	if diff := sameVectors(got, want.Embeddings); diff != "" {
		t.Errorf("float: %s", diff)
	}
	if rep.Object != "list" || rep.Model != want.Model || rep.Usage.PromptTokens != want.TotalTokens || rep.Usage.TotalTokens != want.TotalTokens || want.TotalTokens == 0 {
		t.Errorf("reply: object %q model %q usage %+v; want list, %q, %d tokens", rep.Object, rep.Model, rep.Usage, want.Model, want.TotalTokens)
	}
	got, _ = call(`,"encoding_format":"base64"`)
	if diff := sameVectors(got, want.Embeddings); diff != "" {
		t.Errorf("base64: %s", diff)
	}
	got, _ = call(`,"encoding_format":"float","dimensions":64`)
	if diff := sameVectors(got, want64.Embeddings); diff != "" {
		t.Errorf("dimensions 64: %s", diff)
	}
	var norm float64
	for _, x := range got[0] {
		norm += float64(x) * float64(x)
	}
	if math.Abs(norm-1) > 1e-5 {
		t.Errorf("dimensions 64: squared norm %v; want 1 (normalized again)", norm)
	}

	r := httpPost(t, base+"/embed", "", fmt.Sprintf(`{"inputs":%s}`, in))
	var tei [][]float32
	if r.json(t, &tei); r.code != http.StatusOK {
		t.Fatalf("/embed: %d %s", r.code, r.body)
	}
	if diff := sameVectors(tei, want.Embeddings); diff != "" {
		t.Errorf("/embed: %s", diff)
	}

	r = httpPost(t, base+"/embedd.v1.EmbeddingService/Embed", "", fmt.Sprintf(`{"texts":%s,"dimensions":64}`, in))
	var viaJSON embeddv1.EmbedResponse
	if r.code != http.StatusOK {
		t.Fatalf("Embed as JSON: %d %s", r.code, r.body)
	}
	if err := protojson.Unmarshal(r.body, &viaJSON); err != nil {
		t.Fatal(err)
	}
	var vecs [][]float32
	for _, e := range viaJSON.Embeddings {
		vecs = append(vecs, e.Float32)
	}
	if diff := sameVectors(vecs, want64.Embeddings); diff != "" || viaJSON.TotalTokens != want64.TotalTokens {
		t.Errorf("Embed as JSON: %s, %d tokens; want %d", diff, viaJSON.TotalTokens, want64.TotalTokens)
	}

	// The HTTP calls count in the RPC metrics: 2 gRPC Embed calls, 3
	// OpenAI, 1 TEI, 1 JSON.
	r = httpDo(t, nil, http.MethodGet, "http://"+metricsAddr+"/metrics", "", "")
	if want := `embedd_requests_total{code="OK",method="Embed",model="all-minilm-l6-v2-int8"} 7`; !strings.Contains(string(r.body), want) {
		t.Errorf("metrics: no %s", want)
	}

	r = httpPost(t, base+"/embedd.v1.VectorService/Upsert", "", `{"items":[{"id":"cat","text":"The cat sleeps on the sofa."},{"id":"bond","text":"Bond yields rose."}]}`)
	if r.code != http.StatusOK || !strings.Contains(string(r.body), `"upserted":2`) {
		t.Fatalf("Upsert as JSON: %d %s", r.code, r.body)
	}
	sr, err := embeddv1.NewVectorServiceClient(conn).Search(ctx, &embeddv1.SearchRequest{Query: &embeddv1.SearchRequest_Text{Text: "a sleeping kitten"}, TopK: 2})
	if err != nil || len(sr.Hits) != 2 || sr.Hits[0].Id != "cat" {
		t.Fatalf("gRPC Search after a JSON Upsert: %v %v", sr, err)
	}
	r = httpPost(t, base+"/embedd.v1.VectorService/Search", "", `{"text":"a sleeping kitten","top_k":2}`)
	var js embeddv1.SearchResponse
	if r.code != http.StatusOK {
		t.Fatalf("Search as JSON: %d %s", r.code, r.body)
	}
	if err := protojson.Unmarshal(r.body, &js); err != nil {
		t.Fatal(err)
	}
	if len(js.Hits) != 2 || js.Hits[0].Id != sr.Hits[0].Id || js.Hits[1].Id != sr.Hits[1].Id || js.Hits[0].Score != sr.Hits[0].Score {
		t.Errorf("Search as JSON: %v; want %v", js.Hits, sr.Hits)
	}
}

// TestHTTPErrors: bad input gets the status's HTTP code and the gRPC
// service's message naming the item, index and limit, in each route's
// error shape.
func TestHTTPErrors(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	base, _, stop := runServeHTTP(t, "--features=false", "--max-client-batch", "3", "--max-text-bytes", "100",
		"--http-max-body-bytes", "4096", "--max-message-bytes", "2048")
	defer stop()
	long := strings.Repeat("x", 101)
	for _, tc := range []struct {
		path, body string
		code       int
		want       string // in the message
		field      string // OpenAI routes: type, TEI: error_type, RPC: code
	}{
		{"/v1/embeddings", `{"input":["a","b","c","d"]}`, 400, "texts has 4 items; limit 3 (max_client_batch)", "invalid_request_error"},
		{"/v1/embeddings", `{"input":["a","` + long + `"]}`, 400, "texts[1]: text is 101 bytes; limit 100", "invalid_request_error"},
		{"/v1/embeddings", `{"input":"` + strings.Repeat("y", 5000) + `"}`, 413, "request body exceeds 4096 bytes (--http-max-body-bytes)", "invalid_request_error"},
		{"/v1/embeddings", `{"input":"x","dimensions":385}`, 400, "dimensions 385 out of range [1, 384]", "invalid_request_error"},
		{"/v1/embeddings", `{"input":"x","dimensions":0}`, 400, "dimensions 0 must be at least 1", "invalid_request_error"},
		{"/v1/embeddings", `{"input":"x","encoding_format":"int8"}`, 400, `encoding_format "int8" is not one of float, base64`, "invalid_request_error"},
		{"/v1/embeddings", `{"input":[[101,2023]]}`, 400, "input[0]: token arrays are not supported", "invalid_request_error"},
		{"/v1/embeddings", `{"input":["a",7]}`, 400, "input[1] is 7; want a string", "invalid_request_error"},
		{"/v1/embeddings", `{"input":5}`, 400, "input is 5; want a string or an array of strings", "invalid_request_error"},
		{"/v1/embeddings", `{"model":"x"}`, 400, "input is required", "invalid_request_error"},
		{"/v1/embeddings", `{"input":"x","dimensions":"8"}`, 400, "dimensions is a JSON string; want an integer", "invalid_request_error"},
		{"/v1/embeddings", `not json`, 400, "request body is not JSON", "invalid_request_error"},
		{"/v1/embeddings", `{"input":"x","model":"nope"}`, 404, `unknown model "nope"`, "not_found_error"},
		{"/embed", `{"inputs":[]}`, 422, "texts is empty", "Validation"},
		{"/embed", `{"inputs":["a","` + long + `"]}`, 422, "texts[1]: text is 101 bytes; limit 100", "Validation"},
		{"/embed", `{"inputs":[1]}`, 422, "inputs[0]: token arrays are not supported", "Validation"},
		{"/embedd.v1.VectorService/Search", `{"bogus":1}`, 400, `unknown field "bogus"`, "invalid_argument"},
		{"/embedd.v1.VectorService/Search", `{"collection":"nope","text":"x"}`, 404, `unknown collection: "nope"`, "not_found"},
		{"/embedd.v1.VectorService/Upsert", `{"items":[{"id":"a","text":"a","metadata":"` + strings.Repeat("m", 3000) + `"}]}`, 413, "limit 2048 (--max-message-bytes)", "resource_exhausted"},
		{"/embedd.v1.VectorService/Upsert", `{"items":[{"id":"a"},{"id":"b","text":"b"}]}`, 400, "items[0]", "invalid_argument"},
	} {
		r := httpPost(t, base+tc.path, "", tc.body)
		var e struct {
			Error     json.RawMessage `json:"error"`
			ErrorType string          `json:"error_type"`
			Code      string          `json:"code"`
		}
		r.json(t, &e)
		field := e.Code + e.ErrorType
		var oa struct{ Type string }
		if json.Unmarshal(e.Error, &oa) == nil && oa.Type != "" {
			field = oa.Type
		}
		if r.code != tc.code || !strings.Contains(r.errorText(), tc.want) || field != tc.field {
			t.Errorf("%s %.60s: %d %s; want %d %q with %q", tc.path, tc.body, r.code, r.body, tc.code, tc.field, tc.want)
		}
	}
	if r := httpDo(t, nil, http.MethodGet, base+"/embedd.v1.VectorService/Search", "", ""); r.code != http.StatusMethodNotAllowed {
		t.Errorf("GET on an RPC: %d; want 405", r.code)
	}
	if r := httpDo(t, nil, http.MethodGet, base+"/v1/models/nope", "", ""); r.code != http.StatusNotFound || !strings.Contains(string(r.body), `"code":"model_not_found"`) {
		t.Errorf("GET /v1/models/nope: %d %s; want 404 model_not_found", r.code, r.body)
	}
}

// TestHTTPTLS: with --tls-cert, --tls-key and --tls-client-ca the HTTP API
// speaks TLS only, with the gRPC listener's certificate, and a client
// certificate listed in mtls_subjects authenticates as that key.
func TestHTTPTLS(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	dir := t.TempDir()
	serverCA, clientCA := tlsconftest.NewCA(t, "server CA"), tlsconftest.NewCA(t, "client CA")
	sc, sk := serverCA.Issue(t, "embedd", 1)
	cc, ck := clientCA.Issue(t, "recommender", 2)
	keys := filepath.Join(dir, "keys.yaml")
	unused, _ := auth.NewKey()
	if err := os.WriteFile(keys, fmt.Appendf(nil, "keys:\n  - {id: rec, sha256: %s, scopes: [embed], mtls_subjects: [recommender]}\n", auth.HashKey(unused)), 0o600); err != nil {
		t.Fatal(err)
	}
	base, _, stop := runServeHTTP(t, "--tls-cert", tlsconftest.WriteIn(t, dir, "tls.crt", sc), "--tls-key", tlsconftest.WriteIn(t, dir, "tls.key", sk),
		"--tls-client-ca", tlsconftest.WriteIn(t, dir, "client-ca.crt", clientCA.PEM), "--auth-keys", keys, "--features=false")
	defer stop()
	url := "https://" + strings.TrimPrefix(base, "http://")
	pair, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: serverCA.Pool(), Certificates: []tls.Certificate{pair}}, ForceAttemptHTTP2: true}}
	r := httpDo(t, withCert, http.MethodPost, url+"/v1/embeddings", "", `{"input":"hello"}`)
	if r.code != http.StatusOK {
		t.Errorf("/v1/embeddings as the certificate's key: %d %s", r.code, r.body)
	}
	if r := httpDo(t, withCert, http.MethodPost, url+"/embedd.v1.VectorService/ListCollections", "", `{}`); r.code != http.StatusForbidden {
		t.Errorf("ListCollections without vectors:read: %d %s; want 403", r.code, r.body)
	}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: serverCA.Pool()}}}
	if resp, err := noCert.Post(url+"/v1/embeddings", "application/json", strings.NewReader(`{"input":"hello"}`)); err == nil {
		resp.Body.Close()
		t.Errorf("without a client certificate: %s; want refused", resp.Status)
	}
	if resp, err := http.Post(base+"/v1/embeddings", "application/json", strings.NewReader(`{"input":"hello"}`)); err == nil && resp.StatusCode == http.StatusOK {
		t.Error("plaintext: served; want refused")
	}
}

// TestHTTPRefusesExposedPlaintext: the HTTP API on a non-loopback address
// needs TLS and API keys, as the gRPC listener does, unless --insecure.
func TestHTTPRefusesExposedPlaintext(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, "CA")
	cert, key := ca.Issue(t, "embedd", 1)
	tlsArgs := []string{"--tls-cert", tlsconftest.WriteIn(t, dir, "tls.crt", cert), "--tls-key", tlsconftest.WriteIn(t, dir, "tls.key", key)}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--http-addr", "0.0.0.0:0"}, "--http-addr 0.0.0.0:0 has no TLS (--tls-cert, --tls-key) and API keys (--auth-keys)"},
		{append([]string{"--http-addr", ":0"}, tlsArgs...), "--http-addr :0 has no API keys (--auth-keys)"},
	} {
		err := serve(context.Background(), testServeConfig(t, tc.args...), quiet, nil)
		if !errors.Is(err, errExposed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v; want %v naming %q", tc.args, err, errExposed, tc.want)
		}
	}
	if err := (&tlsFlags{insecure: true}).checkExposure("--http-addr", "0.0.0.0:1", false, true, quiet); err != nil {
		t.Errorf("--insecure: %v; want allowed", err)
	}
}

// TestHTTPDrainsOnShutdown: HTTP requests accepted before shutdown all
// finish (they are gRPC calls underway), and serve returns nil.
func TestHTTPDrainsOnShutdown(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	base, _, stop := runServeHTTP(t, "--features=false", "--max-queue-delay", "2s", "--shutdown-timeout", "20s")
	const n = 8
	codes := make(chan int, n)
	for i := range n {
		go func() {
			resp, err := http.Post(base+"/v1/embeddings", "application/json", strings.NewReader(fmt.Sprintf(`{"input":"request %d in flight at shutdown"}`, i)))
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	time.Sleep(time.Second) // all eight wait in the queue for the 2s delay
	stop()                  // cancels serve and waits for it to return nil
	for range n {
		if c := <-codes; c != http.StatusOK {
			t.Errorf("request accepted before shutdown: %d; want 200", c)
		}
	}
	if resp, err := http.Post(base+"/v1/embeddings", "application/json", strings.NewReader(`{"input":"late"}`)); err == nil {
		resp.Body.Close()
		t.Errorf("request after shutdown: %s; want refused", resp.Status)
	}
}
