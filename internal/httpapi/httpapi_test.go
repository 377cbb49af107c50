package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestHTTPStatus pins Google's mapping of every gRPC code.
func TestHTTPStatus(t *testing.T) {
	want := map[codes.Code]int{
		codes.OK: 200, codes.Canceled: 499, codes.Unknown: 500, codes.InvalidArgument: 400, codes.DeadlineExceeded: 504,
		codes.NotFound: 404, codes.AlreadyExists: 409, codes.PermissionDenied: 403, codes.ResourceExhausted: 429,
		codes.FailedPrecondition: 400, codes.Aborted: 409, codes.OutOfRange: 400, codes.Unimplemented: 501,
		codes.Internal: 500, codes.Unavailable: 503, codes.DataLoss: 500, codes.Unauthenticated: 401,
	}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if got := httpStatus(c); got != want[c] {
			t.Errorf("httpStatus(%v) = %d; want %d", c, got, want[c])
		}
	}
	for c, want := range map[codes.Code]string{codes.InvalidArgument: "invalid_argument", codes.Canceled: "canceled", codes.OK: "ok",
		codes.ResourceExhausted: "resource_exhausted", codes.DataLoss: "data_loss", codes.Unauthenticated: "unauthenticated"} {
		if got := codeName(c); got != want {
			t.Errorf("codeName(%v) = %q; want %q", c, got, want)
		}
	}
}

func TestOpenAIInput(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{`"a b"`, []string{"a b"}, ""},
		{` ["a", "ü\n", ""] `, []string{"a", "ü\n", ""}, ""},
		{`[]`, []string{}, ""},
		{``, nil, "input is required"},
		{`null`, nil, "input is required"},
		{`[1, 2]`, nil, "input[0]: token arrays are not supported"},
		{`[[1], [2]]`, nil, "input[0]: token arrays are not supported"},
		{`["a", null]`, nil, "input[1] is null; want a string"},
		{`{"a":1}`, nil, `input is {"a":1}; want a string or an array of strings`},
		{`"\ud800"`, []string{"\ufffd"}, ""}, // encoding/json replaces a lone surrogate
	} {
		got, err := openAIInput(json.RawMessage(tc.in))
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.msg, tc.err)):
			t.Errorf("openAIInput(%s): error %v; want %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || !slices.Equal(got, tc.want)):
			t.Errorf("openAIInput(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		case err != nil && (err.param != "input" || err.code != http.StatusBadRequest):
			t.Errorf("openAIInput(%s): param %q code %d; want input, 400", tc.in, err.param, err.code)
		}
	}
}

// FuzzOpenAIInput: any body decodes to strings or a 400 naming input; a
// JSON array of strings decodes to exactly those strings.
func FuzzOpenAIInput(f *testing.F) {
	for _, s := range []string{`"x"`, `["a","b"]`, `[1,2]`, `[[1]]`, `[`, `"`, `["a",{}]`, `null`, `[""]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := openAIInput(json.RawMessage(in))
		if err != nil {
			if err.code != http.StatusBadRequest || err.param != "input" || !strings.HasPrefix(err.msg, "input") {
				t.Fatalf("openAIInput(%q): %+v", in, err)
			}
			return
		}
		var want []string
		if json.Unmarshal([]byte(in), &want) == nil && !slices.Equal(got, want) {
			t.Fatalf("openAIInput(%q) = %q; want %q", in, got, want)
		}
	})
}

func TestFloat32Base64(t *testing.T) {
	// 1.0 is 0x3f800000, little-endian 00 00 80 3f.
	got := float32Base64([]float32{1, -2})
	if want := base64.StdEncoding.EncodeToString([]byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}); got != want {
		t.Errorf("float32Base64 = %s; want %s", got, want)
	}
}

// seen records what the gRPC handler saw of one call.
type seen struct {
	md   metadata.MD
	peer *peer.Peer
}

// healthAPI serves the API over a real grpc.Server with the health
// service, behind an interceptor that records each call's metadata and
// peer, and one that refuses calls whose metadata says so with a
// RetryInfo.
func healthAPI(t *testing.T, opts Options) (*httptest.Server, *health.Server, chan seen) {
	t.Helper()
	calls := make(chan seen, 16)
	record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		p, _ := peer.FromContext(ctx)
		calls <- seen{md, p}
		if len(md.Get("x-api-key")) > 0 && md.Get("x-api-key")[0] == "over" {
			st, _ := status.New(codes.ResourceExhausted, "key over its rate").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
			return nil, st.Err()
		}
		return h(ctx, req)
	}
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(record))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	h, err := New(gs, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, hs, calls
}

func post(t *testing.T, url string, header map[string]string, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestCallThroughGRPCServer: a JSON call runs through the grpc.Server's
// interceptors with the caller's credentials and address and nothing else
// of its headers; statuses come back with their code, message and
// details; limits answer 413.
func TestCallThroughGRPCServer(t *testing.T) {
	srv, hs, calls := healthAPI(t, Options{MaxBodyBytes: 64, MaxMessageBytes: 40})
	check := srv.URL + "/grpc.health.v1.Health/Check"
	code, _, body := post(t, check, map[string]string{"Authorization": "Bearer k1", "X-Other": "no"}, `{}`)
	if code != 200 || body != "{\"status\":\"SERVING\"}\n" {
		t.Errorf("Check: %d %q; want 200 SERVING", code, body)
	}
	c := <-calls
	if got := c.md.Get("authorization"); !slices.Equal(got, []string{"Bearer k1"}) {
		t.Errorf("authorization metadata %q; want [Bearer k1]", got)
	}
	if got := c.md.Get("x-other"); got != nil {
		t.Errorf("x-other reached the gRPC server: %q", got)
	}
	if c.peer == nil || !strings.HasPrefix(c.peer.Addr.String(), "127.0.0.1:") || c.peer.Addr.String() == strings.TrimPrefix(srv.URL, "http://") {
		t.Errorf("peer %v; want the HTTP client's address", c.peer)
	}

	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	code, _, body = post(t, check, nil, `{"service":"svc"}`)
	if <-calls; code != 200 || !strings.Contains(body, "NOT_SERVING") {
		t.Errorf("Check svc: %d %s", code, body)
	}
	code, _, body = post(t, check, nil, `{"service":"nope"}`)
	var e connectError
	if <-calls; json.Unmarshal([]byte(body), &e) != nil || code != 404 || e.Code != "not_found" || e.Message != "unknown service" {
		t.Errorf("Check nope: %d %s; want 404 not_found \"unknown service\"", code, body)
	}

	code, hdr, body := post(t, check, map[string]string{"X-Api-Key": "over"}, `{}`)
	<-calls
	if json.Unmarshal([]byte(body), &e) != nil || code != 429 || e.Code != "resource_exhausted" || hdr.Get("Retry-After") != "2" ||
		len(e.Details) != 1 || e.Details[0].Type != "google.rpc.RetryInfo" {
		t.Fatalf("over the rate: %d Retry-After %q %s; want 429, Retry-After 2, a RetryInfo", code, hdr.Get("Retry-After"), body)
	}
	raw, err := base64.RawStdEncoding.DecodeString(e.Details[0].Value)
	var ri errdetails.RetryInfo
	if err != nil || proto.Unmarshal(raw, &ri) != nil || ri.GetRetryDelay().AsDuration() != 1500*time.Millisecond {
		t.Errorf("RetryInfo detail %q: %v %v; want 1.5s", e.Details[0].Value, &ri, err)
	}

	for _, tc := range []struct{ body, want string }{
		{`{"service":"` + strings.Repeat("s", 70) + `"}`, "request body exceeds 64 bytes (--http-max-body-bytes)"},
		{`{"service":"` + strings.Repeat("s", 40) + `"}`, "request is 42 bytes encoded; limit 40 (--max-message-bytes)"},
		{`{"service":1}`, "request body is not a JSON grpc.health.v1.HealthCheckRequest"},
	} {
		code, _, body := post(t, check, nil, tc.body)
		if !strings.Contains(body, tc.want) || (code != 413 && code != 400) {
			t.Errorf("%s: %d %s; want %q", tc.body, code, body, tc.want)
		}
	}
	select {
	case c := <-calls:
		t.Errorf("a refused request reached the gRPC server: %v", c.md)
	default:
	}
}

// TestStoppedServer: after the gRPC server stops, calls answer 503.
func TestStoppedServer(t *testing.T) {
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	h, err := New(gs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	gs.Stop()
	srv := httptest.NewServer(h)
	defer srv.Close()
	code, _, body := post(t, srv.URL+"/grpc.health.v1.Health/Check", nil, `{}`)
	if code != 503 || !strings.Contains(body, `"code":"unavailable"`) {
		t.Errorf("after Stop: %d %s; want 503 unavailable", code, body)
	}
	if got := h.Routes(); !slices.Contains(got, "POST /grpc.health.v1.Health/Check") || slices.Contains(got, "POST /grpc.health.v1.Health/Watch") {
		t.Errorf("routes %v; want Check and not the streaming Watch", got)
	}
}

// TestHealthRoute: GET /health is 200 while the server is SERVING, 503
// after it reports NOT_SERVING.
func TestHealthRoute(t *testing.T) {
	srv, hs, calls := healthAPI(t, Options{})
	resp, err := http.Get(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if <-calls; resp.StatusCode != 200 {
		t.Errorf("GET /health: %d; want 200", resp.StatusCode)
	}
	hs.Shutdown() // what drain does first
	resp, err = http.Get(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if <-calls; resp.StatusCode != 503 || !strings.Contains(string(b), "NOT_SERVING") {
		t.Errorf("GET /health after Shutdown: %d %s; want 503 NOT_SERVING", resp.StatusCode, b)
	}
}
