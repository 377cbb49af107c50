// Package client is the Go client of embedd: typed calls for embedding,
// vector search and upsert, and real-time features over embedd's gRPC API
// (proto/embedd/v1), with retries, API keys, TLS or mutual TLS, and
// client-side load balancing across replicas.
//
//	c, err := client.New("dns:///embedd.default.svc.cluster.local:50051", client.Options{
//		TLS:    &tls.Config{RootCAs: pool},
//		APIKey: os.Getenv("EMBEDD_API_KEY"),
//	})
//	...
//	defer c.Close()
//	res, err := c.Embed(ctx, []string{"hello"}, client.EmbedOptions{})
//
// The typed calls (Embed, Upsert, Search, Get, GetFeatures, Ingest) cover
// the common cases with plain Go types. Everything else — int8 and binary
// outputs, EmbedStream, hybrid collections, jobs, feature statistics — is
// reached through the generated stubs in the Client's Embeddings, Vectors,
// Features and Jobs fields, which share the connection, its API key and
// its retries.
//
// Invariants:
//   - One ClientConn per Client. Its target is a gRPC target: "host:port"
//     and "dns:///host:port" resolve every address of the name and
//     balance calls over them with round_robin (re-resolved when a
//     connection drops); a comma-separated "host1:port,host2:port" is a
//     fixed list of replicas, balanced the same way. With
//     Options.HealthCheck, a replica gets calls only while its gRPC
//     health service reports SERVING (embedd's readiness: its stores
//     answer, and it is not draining).
//   - Retries repeat only calls that are safe to repeat, and only within
//     the caller's deadline. RESOURCE_EXHAUSTED with a RetryInfo hint is
//     retried on every unary method: embedd sends it when it refuses for
//     load before doing any work (a full batch queue, a key's rate or
//     concurrency limit). Without a hint (gRPC's message size limits)
//     it is not retried: it would fail again.
//   - UNAVAILABLE is retried only on methods that are safe to repeat:
//     reads, writes that are idempotent (Upsert and Delete by id,
//     UpsertHybrid, CancelJob), and IngestEvents when every event has an
//     id (the server applies an id once). StartReembed, and IngestEvents
//     with events without ids, are not: the server may have applied them.
//     Events that IngestEvents rejects UNAVAILABLE one by one (a store was
//     down for them) can be sent again: IngestResult.Retryable lists them.
//   - The wait before a retry is the server's RetryInfo hint
//     (google.rpc.RetryInfo in the status details) when it sends one, else
//     an exponential backoff with jitter (RetryPolicy). A retry whose wait
//     would end at or after the context's deadline is not made: the call
//     returns the server's last error at once and never sleeps past the
//     deadline. Streams are never retried.
//   - An API key is sent as "authorization: Bearer <key>" on every call
//     (internal/auth reads it). It needs TLS, except to a loopback
//     address, so that a key never crosses a network in the clear.
//
// Concurrency: a Client is safe for concurrent use; Close ends its
// connections and fails calls in flight.
package client
