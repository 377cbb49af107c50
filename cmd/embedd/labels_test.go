package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// TestServeMetricLabelsBounded: clients naming hundreds of unknown models,
// collections and feature sets add one "other" series per method, not one
// per name; the configured names keep their own.
func TestServeMetricLabelsBounded(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	conn, metricsAddr, stop := runServeMetrics(t, testServeConfig(t))
	defer stop()
	ctx := context.Background()
	ec := embeddv1.NewEmbeddingServiceClient(conn)
	vc := embeddv1.NewVectorServiceClient(conn)
	fc := embeddv1.NewFeatureServiceClient(conn)

	scrape := func() []string {
		t.Helper()
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var series []string
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "embedd_requests_total{") {
				series = append(series, line)
			}
		}
		return series
	}
	notFound := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.NotFound {
			t.Fatalf("%s: got %v; want NotFound", what, err)
		}
	}

	// Configured names.
	if _, err := ec.Embed(ctx, &embeddv1.EmbedRequest{Model: "all-minilm-l6-v2-int8", Texts: []string{"known"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.Get(ctx, &embeddv1.GetRequest{Collection: "default", Ids: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{"u"}, FeatureSet: "recsys"}); err != nil {
		t.Fatal(err)
	}
	before := len(scrape())

	const unknown = 300
	for i := range unknown {
		name := fmt.Sprintf("unknown_%d", i)
		_, err := ec.Embed(ctx, &embeddv1.EmbedRequest{Model: name, Texts: []string{"x"}})
		notFound("Embed "+name, err)
		_, err = vc.Get(ctx, &embeddv1.GetRequest{Collection: name, Ids: []string{"a"}})
		notFound("Get "+name, err)
		_, err = fc.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{"u"}, FeatureSet: name})
		notFound("GetFeatures "+name, err)
	}
	after := scrape()
	// One new series per method: {model="other",code="NotFound"}.
	if len(after) != before+3 {
		t.Errorf("requests_total: %d series before, %d after %d unknown names per kind; want %d:\n%s",
			before, len(after), unknown, before+3, strings.Join(after, "\n"))
	}
	text := strings.Join(after, "\n")
	for _, want := range []string{
		`embedd_requests_total{code="OK",method="Embed",model="all-minilm-l6-v2-int8"} 1`,
		`embedd_requests_total{code="OK",method="Get",model="default"} 1`,
		`embedd_requests_total{code="OK",method="GetFeatures",model="recsys"} 1`,
		fmt.Sprintf(`embedd_requests_total{code="NotFound",method="Embed",model="other"} %d`, unknown),
		fmt.Sprintf(`embedd_requests_total{code="NotFound",method="Get",model="other"} %d`, unknown),
		fmt.Sprintf(`embedd_requests_total{code="NotFound",method="GetFeatures",model="other"} %d`, unknown),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(text, "unknown_") {
		t.Error("a client-supplied name became a label value")
	}
}
