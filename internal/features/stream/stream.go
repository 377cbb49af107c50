// Package stream feeds events from a Redis Stream into the features
// service through a consumer group, so any number of replicas share one
// stream and each event is applied by one of them.
//
// Message format (stream fields, all strings):
//
//	entity_id   required
//	event_id    optional: the event's id (features.Event.ID); default the
//	            stream message id, so a redelivered message is applied once
//	event_type  optional
//	ts          event time: RFC 3339 (2026-11-26T10:00:00.5Z) or unix
//	            milliseconds (1764151200500)
//	values      optional JSON object of numbers, {"amount": 12.5}
//	context     optional JSON object of strings, {"tier": "premium"}
//
// Delivery: at least once. A message is acknowledged (XACK) only after the
// service applied it and its state store acknowledged (so a crash before the
// ack redelivers it), or after it was rejected for good (malformed, invalid,
// too late): a rejected message is copied with its error to the dead-letter
// stream (Options.DeadLetter) before the ack, so nothing is silently
// dropped. A transient failure (a store unavailable) leaves the message
// pending; it is read again from this consumer's pending list after a
// back-off. On start a consumer first re-reads its own pending messages,
// then claims messages another consumer left pending for longer than
// ClaimIdle (a crashed replica), then reads new ones.
//
// Effect: exactly once. Every event carries an id (its event_id field, or
// the stream message id), and the service records the ids each entity
// applied in the same atomic update that applies the event (package
// service, dedupe.go): a message redelivered after a crash between the
// state write and the XACK, or claimed from a dead consumer, is recognized
// and acknowledged without being applied again; so is a message added
// twice to the stream with the same event_id (a producer's retry). The
// session count is deduplicated the same way (package session). The
// guarantee holds while the id is remembered: within the allowed lateness
// and the last service.Options.DedupeIDs events of the entity; older
// redeliveries are rejected as too late (dead-lettered), never applied
// twice.
package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/service"
)

// Ingester applies events; the features service implements it.
type Ingester interface {
	Ingest(ctx context.Context, events []features.Event) ([]error, error)
}

// Options configures a Consumer.
type Options struct {
	// Stream, Group and Consumer name the stream, the consumer group and
	// this consumer (unique per replica). Defaults "embedd:events",
	// "embedd", and the host name.
	Stream, Group, Consumer string
	// DeadLetter is the stream rejected messages go to. Default Stream +
	// ":dead".
	DeadLetter string
	// Batch is the most messages read at once. Default 256; at most the
	// ingester's limit on events per call (service.Limits.Events).
	Batch int
	// Block is how long a read waits for new messages. Default 1s.
	Block time.Duration
	// ClaimIdle is how long another consumer's message stays pending before
	// this one claims it. Default 1m.
	ClaimIdle time.Duration
	// Backoff after a transient failure. Default 500ms.
	Backoff time.Duration
	Logger  *slog.Logger
}

// Consumer reads a stream into an Ingester.
type Consumer struct {
	c    goredis.UniversalClient
	in   Ingester
	opts Options
}

// New returns a consumer; the client is the caller's.
func New(c goredis.UniversalClient, in Ingester, opts Options) (*Consumer, error) {
	if opts.Stream == "" {
		opts.Stream = "embedd:events"
	}
	if opts.Group == "" {
		opts.Group = "embedd"
	}
	if opts.Consumer == "" {
		return nil, errors.New("stream: Options.Consumer is required (unique per replica)")
	}
	if opts.DeadLetter == "" {
		opts.DeadLetter = opts.Stream + ":dead"
	}
	if opts.Batch <= 0 {
		opts.Batch = 256
	}
	opts.Batch = min(opts.Batch, maxEvents(in))
	if opts.Block <= 0 {
		opts.Block = time.Second
	}
	if opts.ClaimIdle <= 0 {
		opts.ClaimIdle = time.Minute
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Consumer{c: c, in: in, opts: opts}, nil
}

// maxEvents is the most events one Ingest call of in takes: the limit in
// effect when in tells it (the features service does), else the service's
// ceiling. A read batch never exceeds it, so a call is never refused whole.
func maxEvents(in Ingester) int {
	if l, ok := in.(interface{ Limits() service.Limits }); ok {
		return l.Limits().Events
	}
	return service.MaxEvents
}

// Run consumes until ctx is done; it returns ctx.Err() or a setup error.
func (c *Consumer) Run(ctx context.Context) error {
	err := c.c.XGroupCreateMkStream(ctx, c.opts.Stream, c.opts.Group, "0").Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("stream: create group: %w", err)
	}
	own := true // drain our own pending list first
	for ctx.Err() == nil {
		var msgs []goredis.XMessage
		var err error
		if own {
			msgs, err = c.read(ctx, "0", 0)
			if err == nil && len(msgs) == 0 {
				own = false
				msgs, err = c.claim(ctx)
			}
		} else {
			msgs, err = c.read(ctx, ">", c.opts.Block)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.opts.Logger.Warn("stream: read failed", "stream", c.opts.Stream, "err", err)
			sleep(ctx, c.opts.Backoff)
			continue
		}
		if len(msgs) == 0 {
			if _, err := c.claimAndProcess(ctx); err != nil {
				sleep(ctx, c.opts.Backoff)
			}
			continue
		}
		if transient := c.process(ctx, msgs); transient {
			own = true // re-read what stayed pending
			sleep(ctx, c.opts.Backoff)
		}
	}
	return ctx.Err()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (c *Consumer) read(ctx context.Context, from string, block time.Duration) ([]goredis.XMessage, error) {
	args := &goredis.XReadGroupArgs{Group: c.opts.Group, Consumer: c.opts.Consumer, Streams: []string{c.opts.Stream, from}, Count: int64(c.opts.Batch), Block: block}
	if block == 0 {
		args.Block = -1 // no BLOCK argument
	}
	res, err := c.c.XReadGroup(ctx, args).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil || len(res) == 0 {
		return nil, err
	}
	return res[0].Messages, nil
}

func (c *Consumer) claim(ctx context.Context) ([]goredis.XMessage, error) {
	msgs, _, err := c.c.XAutoClaim(ctx, &goredis.XAutoClaimArgs{
		Stream: c.opts.Stream, Group: c.opts.Group, Consumer: c.opts.Consumer,
		MinIdle: c.opts.ClaimIdle, Start: "0-0", Count: int64(c.opts.Batch),
	}).Result()
	return msgs, err
}

func (c *Consumer) claimAndProcess(ctx context.Context) (int, error) {
	msgs, err := c.claim(ctx)
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	c.process(ctx, msgs)
	return len(msgs), nil
}

// Decode turns a stream message into an event. The event's ID is the
// message's event_id field, or msgID when it has none.
func Decode(msgID string, m map[string]any) (features.Event, error) {
	str := func(k string) string { s, _ := m[k].(string); return s }
	ev := features.Event{ID: str("event_id"), EntityID: str("entity_id"), Type: str("event_type")}
	if ev.ID == "" {
		ev.ID = msgID
	}
	if ev.EntityID == "" {
		return ev, errors.New("field entity_id is missing")
	}
	ts := str("ts")
	if ts == "" {
		return ev, errors.New("field ts is missing")
	}
	if ms, err := strconv.ParseInt(ts, 10, 64); err == nil {
		ev.Timestamp = time.UnixMilli(ms).UTC()
	} else if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
		ev.Timestamp = t
	} else {
		return ev, fmt.Errorf("field ts %q is neither RFC 3339 nor unix milliseconds", ts)
	}
	if v := str("values"); v != "" {
		if err := json.Unmarshal([]byte(v), &ev.Values); err != nil {
			return ev, fmt.Errorf("field values: not a JSON object of numbers: %v", err)
		}
	}
	if v := str("context"); v != "" {
		if err := json.Unmarshal([]byte(v), &ev.Context); err != nil {
			return ev, fmt.Errorf("field context: not a JSON object of strings: %v", err)
		}
	}
	return ev, nil
}

// process applies msgs and acknowledges what is done for good; it reports
// whether some message failed transiently (left pending).
func (c *Consumer) process(ctx context.Context, msgs []goredis.XMessage) (transient bool) {
	events := make([]features.Event, 0, len(msgs))
	at := make([]int, 0, len(msgs))
	rejected := map[int]error{}
	for i, m := range msgs {
		ev, err := Decode(m.ID, m.Values)
		if err != nil {
			rejected[i] = fmt.Errorf("%w: %v", service.ErrInvalid, err)
			continue
		}
		events = append(events, ev)
		at = append(at, i)
	}
	errs, err := c.in.Ingest(ctx, events)
	if err != nil {
		c.opts.Logger.Warn("stream: ingest failed", "messages", len(msgs), "err", err)
		return true
	}
	for k, e := range errs {
		if e != nil {
			rejected[at[k]] = e
		}
	}
	var ack []string
	for i, m := range msgs {
		e := rejected[i]
		if e != nil && !service.Permanent(e) {
			transient = true
			continue
		}
		if e != nil {
			fields := map[string]any{"id": m.ID, "error": e.Error()}
			for k, v := range m.Values {
				fields["msg_"+k] = v
			}
			if err := c.c.XAdd(ctx, &goredis.XAddArgs{Stream: c.opts.DeadLetter, Values: fields}).Err(); err != nil {
				transient = true // keep it pending rather than lose it
				continue
			}
		}
		ack = append(ack, m.ID)
	}
	if len(ack) > 0 {
		if err := c.c.XAck(ctx, c.opts.Stream, c.opts.Group, ack...).Err(); err != nil {
			c.opts.Logger.Warn("stream: ack failed; messages will be redelivered", "err", err)
			return true
		}
	}
	return transient
}
