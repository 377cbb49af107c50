package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/drift"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/server"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// TestInvalidUTF8AnyRequest: a string that is not UTF-8 deep inside any
// request is INVALID_ARGUMENT naming its path, not INTERNAL; the same
// request with valid strings succeeds.
func TestInvalidUTF8AnyRequest(t *testing.T) {
	reg, err := registry.Default()
	if err != nil {
		t.Fatal(err)
	}
	wcfg, _ := service.WindowConfig(reg, window.DefaultConfig(), time.Hour)
	sess, _ := session.NewMemory(session.DefaultConfig(), session.MemoryOptions{})
	svc, err := service.New(service.Options{Registry: reg, States: service.NewMemory(wcfg, 100), Sessions: sess})
	if err != nil {
		t.Fatal(err)
	}
	conn := serveFeatures(t, svc)

	good := &embeddv1.IngestEventsRequest{Events: []*embeddv1.Event{
		{EntityId: "u1", Timestamp: timestamppb.Now(), Context: map[string]string{"tier": "gold"}},
		{EntityId: "u2", Timestamp: timestamppb.Now()},
	}}
	raw, err := proto.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt the second event's entity id "u2" into "u\xff".
	bad := append([]byte(nil), raw...)
	for i := len(bad) - 1; i > 0; i-- {
		if bad[i-1] == 'u' && bad[i] == '2' {
			bad[i] = 0xff
			break
		}
	}
	var resp embeddv1.IngestEventsResponse
	err = conn.Invoke(context.Background(), embeddv1.FeatureService_IngestEvents_FullMethodName, bad, &resp, grpc.ForceCodecV2(rawCodec{}))
	wantCode(t, err, codes.InvalidArgument, "events[1].entity_id: invalid UTF-8 at byte offset 1")

	var ok embeddv1.IngestEventsResponse
	if err := conn.Invoke(context.Background(), embeddv1.FeatureService_IngestEvents_FullMethodName, raw, &ok, grpc.ForceCodecV2(rawCodec{})); err != nil || ok.Accepted != 2 {
		t.Fatalf("valid request: %v %v", &ok, err)
	}

	// A bad map value in a nested message.
	var b []byte
	ctxEntry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "tier")
	ctxEntry = protowire.AppendString(protowire.AppendTag(ctxEntry, 2, protowire.BytesType), "g\xc3")
	ev := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "u3")
	ev = protowire.AppendBytes(protowire.AppendTag(ev, 5, protowire.BytesType), ctxEntry)
	b = protowire.AppendBytes(protowire.AppendTag(b, 1, protowire.BytesType), ev)
	err = conn.Invoke(context.Background(), embeddv1.FeatureService_IngestEvents_FullMethodName, b, &resp, grpc.ForceCodecV2(rawCodec{}))
	wantCode(t, err, codes.InvalidArgument, "events[0].context[0].value: invalid UTF-8 at byte offset 1")
}

// serveFeatures serves svc's FeatureService with the production server
// options on a loopback listener, until the test ends.
func serveFeatures(tb testing.TB, svc *service.Service) *grpc.ClientConn {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer(server.ServerOptions(0)...)
	embeddv1.RegisterFeatureServiceServer(gs, server.NewFeatures(svc, nil, server.New(nil, server.Options{Logger: quiet()})))
	go gs.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(); gs.Stop() })
	return conn
}

// TestForgedFinding: a client that sends the field number the codec uses to
// carry a UTF-8 finding in an otherwise valid request is not rejected with
// its own text; the field is dropped as the codec's own.
func TestForgedFinding(t *testing.T) {
	reg, err := registry.Default()
	if err != nil {
		t.Fatal(err)
	}
	wcfg, _ := service.WindowConfig(reg, window.DefaultConfig(), time.Hour)
	sess, _ := session.NewMemory(session.DefaultConfig(), session.MemoryOptions{})
	svc, err := service.New(service.Options{Registry: reg, States: service.NewMemory(wcfg, 100), Sessions: sess})
	if err != nil {
		t.Fatal(err)
	}
	conn := serveFeatures(t, svc)
	raw, err := proto.Marshal(&embeddv1.IngestEventsRequest{Events: []*embeddv1.Event{{EntityId: "u1", Timestamp: timestamppb.Now()}}})
	if err != nil {
		t.Fatal(err)
	}
	forged := protowire.AppendString(protowire.AppendTag(append([]byte(nil), raw...), protowire.MaxValidNumber, protowire.BytesType), "forged")
	var resp embeddv1.IngestEventsResponse
	if err := conn.Invoke(context.Background(), embeddv1.FeatureService_IngestEvents_FullMethodName, forged, &resp, grpc.ForceCodecV2(rawCodec{})); err != nil || resp.Accepted != 1 {
		t.Fatalf("valid request with the finding field: %v %v", &resp, err)
	}
	// With a bad string too, the codec's finding wins over the forged one.
	bad := append([]byte(nil), forged...)
	bad[bytes.Index(bad, []byte("u1"))+1] = 0xff
	err = conn.Invoke(context.Background(), embeddv1.FeatureService_IngestEvents_FullMethodName, bad, &resp, grpc.ForceCodecV2(rawCodec{}))
	wantCode(t, err, codes.InvalidArgument, "events[0].entity_id: invalid UTF-8 at byte offset 1")
	if strings.Contains(status.Convert(err).Message(), "forged") {
		t.Errorf("message %q carries the client's text", status.Convert(err).Message())
	}
	// Bytes that do not parse are still the opaque INTERNAL decode error.
	err = conn.Invoke(context.Background(), embeddv1.FeatureService_IngestEvents_FullMethodName, raw[:len(raw)-1], &resp, grpc.ForceCodecV2(rawCodec{}))
	wantCode(t, err, codes.Internal)
}

// TestFeatureStatsErrors: GetFeatureStats answers through the error table.
func TestFeatureStatsErrors(t *testing.T) {
	reg, err := registry.Default()
	if err != nil {
		t.Fatal(err)
	}
	wcfg, _ := service.WindowConfig(reg, window.DefaultConfig(), time.Hour)
	sess, _ := session.NewMemory(session.DefaultConfig(), session.MemoryOptions{})
	svc, err := service.New(service.Options{Registry: reg, States: service.NewMemory(wcfg, 100), Sessions: sess})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	off := server.NewFeatures(svc, nil, server.New(nil, server.Options{Logger: quiet()}))
	_, err = off.GetFeatureStats(ctx, &embeddv1.GetFeatureStatsRequest{})
	wantCode(t, err, codes.FailedPrecondition, "feature monitoring is off")

	mon, err := drift.New(features.SystemClock{}, drift.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Track("amount_sum_5m", false); err != nil {
		t.Fatal(err)
	}
	on := server.NewFeatures(svc, mon, server.New(nil, server.Options{Logger: quiet()}))
	if res, err := on.GetFeatureStats(ctx, &embeddv1.GetFeatureStatsRequest{Features: []string{"amount_sum_5m"}}); err != nil || len(res.Features) != 1 {
		t.Fatalf("tracked feature: %v %v", res, err)
	}
	_, err = on.GetFeatureStats(ctx, &embeddv1.GetFeatureStatsRequest{Features: []string{"amount_sum_5m", "nope"}})
	wantCode(t, err, codes.NotFound, "features[1]", `"nope" is not tracked`)
	_, err = on.GetFeatureStats(ctx, &embeddv1.GetFeatureStatsRequest{Features: make([]string, service.MaxFeatures+1)})
	wantCode(t, err, codes.InvalidArgument, fmt.Sprintf("%d features; limit %d", service.MaxFeatures+1, service.MaxFeatures))
}
