// Package embedcache is an exact-repeat cache of embeddings, bounded in
// bytes, that sits in front of a function computing the embeddings of the
// texts it misses (the engine's batcher). Concurrent calls that need the same
// text wait for one computation of it.
//
// A call is two steps, so that the caller can validate exactly the texts the
// cache cannot serve before any of them is computed:
//
//	miss := c.Lookup(keys, vals)           // hits copied into vals
//	// validate / tokenize keys[miss]
//	err := c.Fill(ctx, keys, vals, miss, compute)
//
// Fill takes each missing key that is neither cached by now nor being
// computed by another call (it leads those), calls compute once with all of
// them, in the order of keys (so they still batch together), stores the
// results, and waits for the keys other calls are computing. A key repeated
// within one call is computed once.
//
// Key: a value is served only for an identical Key: model name, model version
// (the engine puts the manifest version and a digest of the manifest and
// backend there), output dimensions after Matryoshka truncation, normalize,
// truncate, and the exact text bytes. Everything that changes the vector is in
// the key, so a changed model, or a request with other options, never finds
// another's entry. The engine's output is float32 only (quantization happens
// after it, per request), so precision is not part of the key.
//
// Invariants:
//   - A cached vector is, bit for bit, the vector compute returned for that
//     key. The cache stores its own copy and hands out copies: neither the
//     caller nor compute can change a cached vector.
//   - A failed or cancelled computation stores nothing. The calls waiting on
//     it compute the texts themselves (leading or joining a new
//     computation); one never gets another call's error for its texts unless
//     the shared computation of a text failed maxRounds times in a row, and
//     then the error says so (ErrShared). A waiter whose own ctx ends returns
//     ctx's error without disturbing the computation it waited for.
//   - The entries' bytes stay within Options.MaxBytes once the cache's
//     maintenance has run (it runs after writes; see otter's MaximumWeight).
//     An entry's bytes (Cost) count its key (text, model and version strings
//     included) and its vector, plus a fixed estimate of the bookkeeping
//     around them; the text is copied on insert, so a key never retains a
//     caller's larger buffer.
//
// Counting, per model name (Stats): a hit is a text served without being
// computed for this call, from the cache or from another call's computation
// in flight; a miss is a text this call computed; an eviction is an entry
// dropped to stay within MaxBytes; bytes are the entries' Cost.
//
// Library: github.com/maypok86/otter/v2 holds the entries. It bounds by an
// exact per-entry weight (MaximumWeight with a Weigher), stores the full key
// (a hit is an exact match, not a hash match), makes a write visible to the
// next read, scales reads without a global lock, and evicts by W-TinyLFU, the
// policy of Java's Caffeine: a frequency sketch admits a new entry only if it
// is likely to be used more than the one it would evict, so a stream of
// one-off texts (a bulk re-embedding) does not flush the hot set, as it would
// from an LRU. dgraph-io/ristretto/v2 was set aside because it keys entries
// by 64-bit hashes (a collision serves another text's vector), applies writes
// asynchronously and may drop them; hashicorp/golang-lru/v2 bounds by count,
// behind one lock, with plain LRU. The in-flight table is ours rather than
// otter's BulkGet: BulkGet answers with a map (order and duplicates lost),
// may call its loader more than once per call, and would hand a joined
// caller the error of another caller's failed load; Fill computes each
// call's missing keys in one compute call, in order, and retries instead.
//
// Concurrency: a Cache is safe for concurrent use. compute runs in the
// goroutine that called Fill; Fill holds no lock while it runs.
package embedcache
