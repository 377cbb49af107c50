package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// EmbedOptions are the options of Embed.
type EmbedOptions struct {
	// Model names the model; empty: the server's default.
	Model string
	// Dimensions keeps the first N dimensions (Matryoshka models) and
	// renormalizes; 0 keeps all.
	Dimensions int
	// Truncate cuts texts longer than the model's limit instead of
	// failing the call.
	Truncate bool
}

// Embeddings is the reply of Embed: one vector per text, in order.
type Embeddings struct {
	Model, ModelVersion string
	Dims                int
	Vectors             [][]float32
	// Tokens[i] is the number of tokens text i became, special tokens
	// included.
	Tokens      []int
	TotalTokens int
}

// Embed embeds texts as float32 vectors. For int8 or binary outputs use
// c.Embeddings.Embed with OutputType set.
func (c *Client) Embed(ctx context.Context, texts []string, o EmbedOptions) (*Embeddings, error) {
	if o.Dimensions < 0 {
		return nil, fmt.Errorf("client: Embed: dimensions %d is negative", o.Dimensions)
	}
	resp, err := c.Embeddings.Embed(ctx, &embeddv1.EmbedRequest{Model: o.Model, Texts: texts, Truncate: o.Truncate, Dimensions: uint32(o.Dimensions)})
	if err != nil {
		return nil, err
	}
	out := &Embeddings{Model: resp.Model, ModelVersion: resp.ModelVersion, Dims: int(resp.Dims), TotalTokens: int(resp.TotalTokens)}
	for _, e := range resp.Embeddings {
		out.Vectors = append(out.Vectors, e.Float32)
		out.Tokens = append(out.Tokens, int(e.Tokens))
	}
	return out, nil
}

// Item is one record of Upsert: an id with a text to embed or a vector.
type Item struct {
	ID string
	// Exactly one of Text and Vector.
	Text   string
	Vector []float32
	// Metadata is stored as a JSON object and can be filtered on in
	// Search (metadata["lang"] == "en").
	Metadata map[string]any
	// Features are numeric values kept with the item in the online store.
	Features map[string]float64
}

// UpsertResult is the reply of Upsert.
type UpsertResult struct {
	Upserted                        int
	Collection, Model, ModelVersion string
	// Queued: the server's write-ahead log holds the write until a store
	// that was down is back (embedd serve --durable).
	Queued bool
}

// Upsert writes items to collection (empty: the server's default). It is
// idempotent by id (the last write of an id wins), so it is retried on
// UNAVAILABLE.
func (c *Client) Upsert(ctx context.Context, collection string, items []Item) (*UpsertResult, error) {
	req := &embeddv1.UpsertRequest{Collection: collection, Items: make([]*embeddv1.Item, len(items))}
	for i, it := range items {
		md := ""
		if it.Metadata != nil {
			b, err := json.Marshal(it.Metadata)
			if err != nil {
				return nil, fmt.Errorf("client: Upsert: items[%d] (id %q) metadata: %w", i, it.ID, err)
			}
			md = string(b)
		}
		req.Items[i] = &embeddv1.Item{Id: it.ID, Text: it.Text, Vector: it.Vector, Metadata: md, Features: it.Features}
	}
	resp, err := c.Vectors.Upsert(ctx, req)
	if err != nil {
		return nil, err
	}
	return &UpsertResult{Upserted: int(resp.Upserted), Collection: resp.Collection, Model: resp.Model, ModelVersion: resp.ModelVersion, Queued: resp.Queued}, nil
}

// Query is what Search looks for: exactly one of Text, Vector and ID (a
// stored item, left out of its own results).
type Query struct {
	Text   string
	Vector []float32
	ID     string
	// TopK is the number of hits; 0 selects 10.
	TopK int
	// Filter is a boolean expression over id, metadata, model_version and
	// updated_at, e.g. `metadata["lang"] == "en"`.
	Filter string
	// Rescore reorders the index's candidates by exact float cosine.
	Rescore bool
}

// Hit is one search result.
type Hit struct {
	ID       string
	Score    float32
	Metadata map[string]any
}

// SearchResult is the reply of Search, best hit first.
type SearchResult struct {
	Hits                     []Hit
	Collection, ModelVersion string
	// Rescored: the scores are exact float cosine similarities.
	Rescored bool
}

// Search finds the items of collection (empty: the default) nearest to q.
func (c *Client) Search(ctx context.Context, collection string, q Query) (*SearchResult, error) {
	req := &embeddv1.SearchRequest{Collection: collection, TopK: 10, Filter: q.Filter, Rescore: q.Rescore}
	if q.TopK < 0 {
		return nil, fmt.Errorf("client: Search: top_k %d is negative", q.TopK)
	} else if q.TopK > 0 {
		req.TopK = uint32(q.TopK)
	}
	n := 0
	if q.Text != "" {
		n++
		req.Query = &embeddv1.SearchRequest_Text{Text: q.Text}
	}
	if q.Vector != nil {
		n++
		req.Query = &embeddv1.SearchRequest_Vector{Vector: &embeddv1.FloatVector{Values: q.Vector}}
	}
	if q.ID != "" {
		n++
		req.Query = &embeddv1.SearchRequest_Id{Id: q.ID}
	}
	if n != 1 {
		return nil, fmt.Errorf("client: Search: set exactly one of Query.Text, Vector and ID; %d are set", n)
	}
	resp, err := c.Vectors.Search(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &SearchResult{Collection: resp.Collection, ModelVersion: resp.ModelVersion, Rescored: resp.Rescored}
	for i, h := range resp.Hits {
		md, err := metadata(h.Metadata)
		if err != nil {
			return nil, fmt.Errorf("client: Search: hits[%d] (id %q): %w", i, h.Id, err)
		}
		out.Hits = append(out.Hits, Hit{ID: h.Id, Score: h.Score, Metadata: md})
	}
	return out, nil
}

// StoredItem is one item of Get.
type StoredItem struct {
	ID           string
	Metadata     map[string]any
	ModelVersion string
	UpdatedAt    time.Time
	Features     map[string]float64
}

// Get returns the stored items of ids in collection (empty: the default),
// and the ids it does not hold.
func (c *Client) Get(ctx context.Context, collection string, ids []string) (items []StoredItem, missing []string, err error) {
	resp, err := c.Vectors.Get(ctx, &embeddv1.GetRequest{Collection: collection, Ids: ids})
	if err != nil {
		return nil, nil, err
	}
	for i, it := range resp.Items {
		md, err := metadata(it.Metadata)
		if err != nil {
			return nil, nil, fmt.Errorf("client: Get: items[%d] (id %q): %w", i, it.Id, err)
		}
		items = append(items, StoredItem{ID: it.Id, Metadata: md, ModelVersion: it.ModelVersion, UpdatedAt: time.UnixMilli(it.UpdatedAtUnixMs), Features: it.Features})
	}
	return items, resp.Missing, nil
}

func metadata(s string) (map[string]any, error) {
	if s == "" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("metadata is not a JSON object: %w", err)
	}
	return m, nil
}

// Event is one event for Ingest.
type Event struct {
	Entity, Type string
	// ID, when set, makes the event apply once however often it is sent
	// (within the server's allowed lateness): a call whose events all have
	// ids is retried on UNAVAILABLE too.
	ID string
	// Time of the event; zero means now (the server's clock).
	Time    time.Time
	Values  map[string]float64
	Context map[string]string
}

// EventError is one event Ingest rejected.
type EventError struct {
	// Index of the event in the call.
	Index int
	// Code: INVALID_ARGUMENT (never send it again), OUT_OF_RANGE (too late
	// for its window), UNAVAILABLE (a store was down: send it again).
	Code    codes.Code
	Message string
}

// IngestResult is the reply of Ingest.
type IngestResult struct {
	Accepted int
	Errors   []EventError
}

// Retryable returns the indexes of the events rejected UNAVAILABLE, which
// may be sent again.
func (r *IngestResult) Retryable() []int {
	var out []int
	for _, e := range r.Errors {
		if e.Code == codes.Unavailable {
			out = append(out, e.Index)
		}
	}
	return out
}

// Ingest sends events to the feature service. Each event is accepted or
// rejected on its own. The call as a whole is retried on UNAVAILABLE only
// when every event has an ID (else the server may have applied some, and
// they would count twice).
func (c *Client) Ingest(ctx context.Context, events []Event) (*IngestResult, error) {
	req := &embeddv1.IngestEventsRequest{Events: make([]*embeddv1.Event, len(events))}
	for i, e := range events {
		pe := &embeddv1.Event{EventId: e.ID, EntityId: e.Entity, EventType: e.Type, Values: e.Values, Context: e.Context}
		if !e.Time.IsZero() {
			pe.Timestamp = timestamppb.New(e.Time)
		}
		req.Events[i] = pe
	}
	resp, err := c.Features.IngestEvents(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &IngestResult{Accepted: int(resp.Accepted)}
	for _, e := range resp.Errors {
		out.Errors = append(out.Errors, EventError{Index: int(e.Index), Code: codes.Code(e.Code), Message: e.Message})
	}
	return out, nil
}

// FeatureRequest asks for feature values of entities.
type FeatureRequest struct {
	Entities []string
	// Features ("name" or "name@version") or FeatureSet: exactly one.
	Features   []string
	FeatureSet string
	// AsOf is the time the values refer to; zero means now.
	AsOf time.Time
	// Context is read by rule features (context.<key>).
	Context map[string]string
}

// FeatureValue is one feature's value for one entity.
type FeatureValue struct {
	Name    string
	Version int
	Value   float64
	// Null: no value (e.g. no event in the window); Value is 0.
	Null bool
	// Time the value refers to; zero if none.
	Time time.Time
	// Source: "computed", "cache", "online" or "offline".
	Source string
}

// EntityFeatures holds one entity's values, in the order of the request's
// features (a set's in its order).
type EntityFeatures struct {
	Entity string
	// Found is false when the server knows nothing of the entity.
	Found  bool
	Values []FeatureValue
}

// Value returns the entity's value of the feature name.
func (e EntityFeatures) Value(name string) (FeatureValue, bool) {
	for _, v := range e.Values {
		if v.Name == name {
			return v, true
		}
	}
	return FeatureValue{}, false
}

var sources = map[embeddv1.ValueSource]string{
	embeddv1.ValueSource_VALUE_SOURCE_COMPUTED: "computed",
	embeddv1.ValueSource_VALUE_SOURCE_CACHE:    "cache",
	embeddv1.ValueSource_VALUE_SOURCE_ONLINE:   "online",
	embeddv1.ValueSource_VALUE_SOURCE_OFFLINE:  "offline",
}

// GetFeatures returns feature values of r.Entities, one EntityFeatures per
// entity in request order.
func (c *Client) GetFeatures(ctx context.Context, r FeatureRequest) ([]EntityFeatures, error) {
	req := &embeddv1.GetFeaturesRequest{EntityIds: r.Entities, Features: r.Features, FeatureSet: r.FeatureSet, Context: r.Context}
	if !r.AsOf.IsZero() {
		req.AsOf = timestamppb.New(r.AsOf)
	}
	resp, err := c.Features.GetFeatures(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make([]EntityFeatures, 0, len(resp.Entities))
	for i, e := range resp.Entities {
		n := len(resp.Features)
		if len(e.Values) != n || len(e.IsNull) != n || len(e.TimestampsUnixMicros) != n || len(e.Sources) != n {
			return nil, fmt.Errorf("client: GetFeatures: entities[%d] (%q) has %d values, %d nulls, %d times, %d sources for %d features",
				i, e.EntityId, len(e.Values), len(e.IsNull), len(e.TimestampsUnixMicros), len(e.Sources), n)
		}
		ef := EntityFeatures{Entity: e.EntityId, Found: e.Found, Values: make([]FeatureValue, n)}
		for k, f := range resp.Features {
			v := FeatureValue{Name: f.Name, Version: int(f.Version), Value: e.Values[k], Null: e.IsNull[k], Source: sources[e.Sources[k]]}
			if us := e.TimestampsUnixMicros[k]; us != 0 {
				v.Time = time.UnixMicro(us)
			}
			ef.Values[k] = v
		}
		out = append(out, ef)
	}
	return out, nil
}
