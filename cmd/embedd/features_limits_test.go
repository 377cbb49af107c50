package main

import (
	"context"
	"strings"
	"testing"

	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestServeFeatureStateLimit: in the embedded mode, events of a new entity
// beyond --feature-state-max-entities are refused UNAVAILABLE, naming the
// limit, while held entities keep ingesting.
func TestServeFeatureStateLimit(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	conn, stop := runServe(t, testServeConfig(t, "--feature-state-max-entities", "2"))
	defer stop()
	fc := embeddv1.NewFeatureServiceClient(conn)
	var evs []*embeddv1.Event
	for _, id := range []string{"a", "b", "c", "a"} {
		evs = append(evs, &embeddv1.Event{EntityId: id, EventType: "view", Timestamp: timestamppb.Now()})
	}
	res, err := fc.IngestEvents(context.Background(), &embeddv1.IngestEventsRequest{Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 3 || len(res.Errors) != 1 || res.Errors[0].Index != 2 || codes.Code(res.Errors[0].Code) != codes.Unavailable ||
		!strings.Contains(res.Errors[0].Message, "limit 2") {
		t.Errorf("ingest: %v; want 3 accepted and events[2] UNAVAILABLE naming limit 2", res)
	}
}
