package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/testassets"
)

func runCLI(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return out.String(), err
}

func TestEmbedCommand(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	base := []string{"embed", "--cache-dir", testassets.CacheDir(), "--model", "all-minilm-l6-v2-int8"}
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		check func(item map[string]any) bool
		n     int
	}{
		{"float", []string{"hello world"}, "", func(it map[string]any) bool { return len(it["embedding"].([]any)) == 384 }, 1},
		{"int8 dims", []string{"--output", "int8", "--dimensions", "64", "a", "b"}, "", func(it map[string]any) bool {
			return len(it["int8"].([]any)) == 64 && it["scale"].(float64) > 0
		}, 2},
		{"binary", []string{"--output", "binary", "x"}, "", func(it map[string]any) bool { return len(it["binary"].(string)) == 64 }, 1}, // 48 bytes in base64
		{"stdin", []string{"-"}, "one\ntwo\nthree\n", func(it map[string]any) bool { return it["tokens"].(float64) == 3 }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCLI(t, tc.stdin, append(base, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			var res struct {
				Model string
				Data  []map[string]any
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			if len(res.Data) != tc.n || res.Model != "all-minilm-l6-v2-int8" {
				t.Fatalf("got %d items of model %q; want %d", len(res.Data), res.Model, tc.n)
			}
			for i, it := range res.Data {
				if !tc.check(it) {
					t.Errorf("item %d: unexpected %v", i, it)
				}
			}
		})
	}
	_, err := runCLI(t, "", append(base, "--truncate=false", strings.Repeat("a ", 300))...)
	if err == nil || !strings.Contains(err.Error(), "texts[0]") || !strings.Contains(err.Error(), "302 tokens") {
		t.Errorf("got %v; want an error naming texts[0] and 302 tokens", err)
	}
	for _, args := range [][]string{{}, {"nope"}, {"embed", "--output", "fp16", "x"}, {"models"}, {"models", "pull"}} {
		if _, err := runCLI(t, "", args...); !errors.Is(err, errUsage) {
			t.Errorf("%q: got %v; want a usage error", args, err)
		}
	}
}

// TestHelpRunsNothing: -h on any command prints its usage and returns
// flag.ErrHelp (exit 0) without running it: `serve -h` must not serve.
func TestHelpRunsNothing(t *testing.T) {
	for _, args := range [][]string{{"serve", "-h"}, {"embed", "--help", "text"}, {"reembed", "-h"}, {"collections", "list", "-h"}, {"collections", "-h"},
		{"features", "list", "-h"}, {"health", "-h"}, {"bench", "-h"}} {
		done := make(chan error, 1)
		go func() { _, err := runCLI(t, "", args...); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, flag.ErrHelp) {
				t.Errorf("%v: %v; want flag.ErrHelp", args, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: still running after 10s", args)
		}
	}
}
