package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// TestServeEmbedCache: serve caches embeddings by default, Embed and Upsert
// both go through the cache, and its series are on /metrics;
// --embed-cache-bytes 0 turns it off.
func TestServeEmbedCache(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	for _, tc := range []struct {
		name string
		args []string
		want []string // lines of /metrics
	}{
		{"default", nil, []string{
			`embedd_embed_cache_hits_total{model="all-minilm-l6-v2-int8"} 2`,
			`embedd_embed_cache_misses_total{model="all-minilm-l6-v2-int8"} 2`,
			`embedd_embed_cache_evictions_total{model="all-minilm-l6-v2-int8"} 0`,
		}},
		{"off", []string{"--embed-cache-bytes", "0"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, metricsAddr, stop := runServeMetrics(t, testServeConfig(t, tc.args...))
			defer stop()
			ctx := context.Background()
			ec := embeddv1.NewEmbeddingServiceClient(conn)
			vc := embeddv1.NewVectorServiceClient(conn)
			for range 2 {
				if _, err := ec.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{"asked twice"}}); err != nil {
					t.Fatal(err)
				}
			}
			for _, id := range []string{"a", "b"} {
				if _, err := vc.Upsert(ctx, &embeddv1.UpsertRequest{Items: []*embeddv1.Item{{Id: id, Text: "stored twice"}}}); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := http.Get("http://" + metricsAddr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var got []string
			for _, line := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(line, "embedd_embed_cache_") {
					got = append(got, line)
				}
			}
			text := strings.Join(got, "\n")
			for _, want := range tc.want {
				if !strings.Contains(text, want) {
					t.Errorf("metrics lack %s; have:\n%s", want, text)
				}
			}
			if tc.want == nil && len(got) > 0 {
				t.Errorf("cache off: got series\n%s\nwant none", text)
			}
			if tc.want != nil && !strings.Contains(text, `embedd_embed_cache_bytes{model="all-minilm-l6-v2-int8"} `) {
				t.Errorf("metrics lack embedd_embed_cache_bytes; have:\n%s", text)
			}
		})
	}
}
