package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/auth"
	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tlsconf/tlsconftest"
)

// remoteStatsLine is the line `reembed --server` prints after its summary.
var remoteStatsLine = regexp.MustCompile(`embedded through server \S+: (\d+) requests, (\d+) retried \((\d+) after its RetryInfo hint, hints (\S+) to (\S+)\)`)

// TestReembedRemote: `reembed --server` re-embeds a collection of the old
// model through the EmbedStream of a real `serve` (TLS, API keys, a queue
// of 32 texts), writing the stores itself, and swaps the alias. The server refuses requests for now twice over: its queue is
// full (RESOURCE_EXHAUSTED in the stream's reply, RetryInfo 50ms) and the
// key is over its rate of 1 call/s (the stream itself refused, RetryInfo
// up to 1s); the job retries after each hint and writes every record once
// with the server's model. A call without a key, a key without scope
// embed, a model the server lacks and a version bound to another model are
// refused with exit status 2 and a message that says so.
func TestReembedRemote(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, oldModel)
	testassets.Model(t, newModel)
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, "server CA")
	cert, key := ca.Issue(t, "embedd", 1)
	secrets := map[string]string{}
	var keys strings.Builder
	keys.WriteString("keys:\n")
	for _, k := range []struct{ id, scopes, limits string }{
		{"job", "embed", "    rate: 1\n    burst: 1\n"},
		{"reader", "vectors:read", ""},
	} {
		secret, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		secrets[k.id] = tlsconftest.WriteIn(t, dir, k.id+".key", []byte(secret+"\n"))
		fmt.Fprintf(&keys, "  - id: %s\n    sha256: %s\n    scopes: [%s]\n%s", k.id, auth.HashKey(secret), k.scopes, k.limits)
	}
	c := testServeConfig(t, "--model", newModel, "--queue-size", "32", "--features=false",
		"--tls-cert", tlsconftest.WriteIn(t, dir, "tls.crt", cert), "--tls-key", tlsconftest.WriteIn(t, dir, "tls.key", key),
		"--auth-keys", tlsconftest.WriteIn(t, dir, "keys.yaml", []byte(keys.String())))
	conn, stop := runServe(t, c)
	defer stop()
	addr := conn.Target()

	be := backends(t)[0] // the job's stores; the server only embeds
	data := filepath.Join(dir, "data")
	src, texts := reembedCorpus(t, dir, 400)
	job := func(keyID string, extra ...string) (string, error) {
		args := reembedArgs(data, "docs", newModel, be, "--server", addr, "--tls-ca", tlsconftest.WriteIn(t, dir, "ca.crt", ca.PEM),
			"--batch-size", "64", "--in-flight", "2", "--server-chunk", "16", "--max-retries", "20")
		if keyID != "" {
			args = append(args, "--api-key-file", secrets[keyID])
		}
		return runCLI(t, "", append(append(args, extra...), src)...)
	}

	for _, tc := range []struct {
		name, key string
		extra     []string
		want      string
	}{
		{"no key", "", nil, "Unauthenticated"},
		{"key without scope embed", "reader", nil, "PermissionDenied"},
		{"model the server lacks", "job", []string{"--model", "no-such-model"}, `does not serve model "no-such-model"`},
	} {
		out, err := job(tc.key, tc.extra...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want exit status 2 with %q\n%s", tc.name, err, tc.want, out)
		}
	}

	// The collection holds the old model's vectors (a job in process).
	if out, err := runCLI(t, "", append(reembedArgs(data, "docs", oldModel, be), src)...); err == nil || errors.Is(err, errUsage) {
		t.Fatalf("first job, in process: %v\n%s", err, out)
	}
	start := time.Now()
	out, err := job("job")
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(out, "embedded 400, skipped 0, failed 1") || !strings.Contains(out, "alias docs -> ") {
		t.Fatalf("job: %v; want all 400 embedded, the record without text failed (exit status 1), the alias swapped\n%s", err, out)
	}
	t.Logf("%s\n%s", time.Since(start).Round(time.Millisecond), out)
	m := remoteStatsLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no remote statistics line in\n%s", out)
	}
	requests, _ := strconv.Atoi(m[1])
	retried, _ := strconv.Atoi(m[2])
	hinted, _ := strconv.Atoi(m[3])
	minHint, err1 := time.ParseDuration(m[4])
	maxHint, err2 := time.ParseDuration(m[5])
	if requests < 400/16 || retried == 0 || hinted == 0 || err1 != nil || err2 != nil {
		t.Errorf("requests %d, retried %d, hinted %d; want at least 25 requests and retries after the server's hints", requests, retried, hinted)
	}
	// The queue's hint (serve's RetryAfter) and the key's rate limiter's
	// (the time to its next token, near 1s after the GetModel call took it).
	if minHint != 50*time.Millisecond || maxHint < 500*time.Millisecond || maxHint > time.Second {
		t.Errorf("hints %s to %s; want 50ms (queue full) to about 1s (rate limit)", minHint, maxHint)
	}
	live := checkLive(t, openCollection(t, data, "docs", be), "docs", newModel, texts, true)

	// With truncation off, a text too long for the model is refused by the
	// server; only that record goes to the dead-letter file.
	long := filepath.Join(dir, "long.jsonl")
	lines := `{"id":"a","text":"short one"}` + "\n" + `{"id":"b","text":"` + strings.Repeat("word ", 600) + `"}` + "\n" + `{"id":"c","text":"short two"}` + "\n"
	if err := os.WriteFile(long, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "", append(reembedArgs(data, "long", newModel, be, "--server", addr, "--tls-ca", filepath.Join(dir, "ca.crt"),
		"--api-key-file", secrets["job"], "--truncate=false", "--max-retries", "20"), long)...)
	dl, _ := os.ReadFile(filepath.Join(data, "reembed", "long", "dead-letter-0000-of-0001.jsonl"))
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(out, "embedded 2, skipped 0, failed 1") || !strings.Contains(string(dl), `"id":"b"`) || strings.Count(string(dl), "\n") != 1 {
		t.Errorf("too long a text: %v; want 2 embedded and b alone in the dead letters\n%s\ndead letters: %s", err, out, dl)
	}

	// --max-rate paces the requests to the server: 150 records at 20/s
	// take at least (150-64)/20 s after the first request's burst of 64
	// (unpaced, about 2s here, retries after the full queue included).
	paced, _ := reembedCorpus(t, t.TempDir(), 150)
	start = time.Now()
	out, err = runCLI(t, "", append(reembedArgs(data, "paced", newModel, be, "--server", addr, "--tls-ca", filepath.Join(dir, "ca.crt"),
		"--api-key-file", secrets["job"], "--max-rate", "20", "--max-retries", "20"), paced)...)
	took := time.Since(start)
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(out, "embedded 150,") || took < 4300*time.Millisecond {
		t.Errorf("paced job: %v in %s; want 150 embedded in at least 4.3s\n%s", err, took, out)
	}
	t.Logf("paced job: %s", took.Round(time.Millisecond))

	// The live version is bound to the new model: a job naming it with the
	// old one is refused, naming the binding.
	out, err = job("job", "--model", oldModel, "--version", live.Version)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "is bound to model version") {
		t.Errorf("old model into %s: %v; want exit status 2 naming the binding\n%s", live.Version, err, out)
	}
}
