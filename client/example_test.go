package client_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"testing"
	"time"

	"github.com/embedd/embedd/client"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// serverAddr is the address of the server the examples call: embedd's
// services on a loopback port (server_test.go), with the real model.
var (
	serverAddr string
	testStack  *stack
)

// TestMain starts the server. Without model assets the examples cannot
// print their output: they are skipped (the other tests skip themselves),
// unless EMBEDD_REQUIRE_ASSETS=1, under which missing assets fail the run.
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	cat, err := loadRuntime()
	if errors.Is(err, errNoAssets) && os.Getenv("EMBEDD_REQUIRE_ASSETS") != "1" {
		fmt.Fprintf(os.Stderr, "client: examples skipped: %v\n", err)
		if err := flag.Set("test.skip", "^Example"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "embedd-client-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if testStack, err = newStack(cat, dir); err != nil {
		fmt.Fprintf(os.Stderr, "client: start server: %v\n", err)
		return 1
	}
	defer testStack.close()
	addr, stop, err := testStack.serve()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	serverAddr = addr
	return m.Run()
}

// Embed texts with the server's default model. A bare host:port (or
// dns:///host:port) target balances over every address of the name.
func Example() {
	c, err := client.New(serverAddr, client.DefaultOptions())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Embed(ctx, []string{"embedd turns text into vectors", "hello world"}, client.EmbedOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Model, res.Dims, len(res.Vectors))
	fmt.Printf("norm %.2f, tokens %v\n", norm(res.Vectors[0]), res.Tokens)
	// Output:
	// all-minilm-l6-v2-int8 384 2
	// norm 1.00, tokens [9 4]
}

// Upsert items by id (the last write of an id wins) and search them by
// text, with a metadata filter.
func Example_search() {
	c, err := client.New(serverAddr, client.DefaultOptions())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	up, err := c.Upsert(ctx, "docs", []client.Item{
		{ID: "cat", Text: "the cat sat on the mat", Metadata: map[string]any{"lang": "en"}},
		{ID: "stocks", Text: "stock markets fell sharply today", Metadata: map[string]any{"lang": "en"}},
		{ID: "chat", Text: "le chat dort sur le tapis", Metadata: map[string]any{"lang": "fr"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("upserted", up.Upserted, "into", up.Collection)
	res, err := c.Search(ctx, "docs", client.Query{Text: "a kitten lying on a rug", TopK: 2, Filter: `metadata["lang"] == "en"`, Rescore: true})
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range res.Hits {
		fmt.Printf("%s %.1f %v\n", h.ID, h.Score, h.Metadata["lang"])
	}
	// Output:
	// upserted 3 into docs
	// cat 0.6 en
	// stocks 0.1 en
}

// Send events, then read the real-time features they feed.
func ExampleClient_GetFeatures() {
	c, err := client.New(serverAddr, client.DefaultOptions())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	in, err := c.Ingest(ctx, []client.Event{
		{ID: "e1", Entity: "user-1", Type: "purchase", Time: now.Add(-2 * time.Minute), Values: map[string]float64{"amount": 10}},
		{ID: "e2", Entity: "user-1", Type: "purchase", Time: now.Add(-time.Minute), Values: map[string]float64{"amount": 32.5}},
		{ID: "e3", Entity: "", Type: "purchase", Values: map[string]float64{"amount": 1}}, // rejected: no entity
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("accepted", in.Accepted)
	for _, e := range in.Errors {
		fmt.Println("rejected event", e.Index, e.Code)
	}
	ents, err := c.GetFeatures(ctx, client.FeatureRequest{Entities: []string{"user-1", "user-2"}, Features: []string{"amount_sum_1h", "amount_count_1h"}})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range ents {
		sum, _ := e.Value("amount_sum_1h")
		count, _ := e.Value("amount_count_1h")
		fmt.Printf("%s found=%v sum=%g count=%g\n", e.Entity, e.Found, sum.Value, count.Value)
	}
	// Output:
	// accepted 2
	// rejected event 2 InvalidArgument
	// user-1 found=true sum=42.5 count=2
	// user-2 found=false sum=0 count=0
}

// The generated stubs reach what the typed calls leave out, here int8
// output of the first 128 dimensions; they share the client's retries and
// API key.
func ExampleClient_rawStubs() {
	c, err := client.New(serverAddr, client.DefaultOptions())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Embeddings.Embed(ctx, &embeddv1.EmbedRequest{
		Texts:      []string{"quantized on the server"},
		Dimensions: 128,
		OutputType: embeddv1.OutputType_OUTPUT_TYPE_INT8,
	})
	if err != nil {
		log.Fatal(err)
	}
	e := resp.Embeddings[0]
	fmt.Println(resp.Dims, len(e.Int8), e.Scale > 0)
	// Output: 128 128 true
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}
