package cuda

// Host-side planning of a run, pure Go and cgo-free so that the ordinary
// test run covers it: how a packed batch is cut into chunks, and where a
// chunk's inputs and results lie in the worker's buffers.

// nextChunk returns the end of the chunk that starts at text r0 of a packed
// batch with offsets start (len = texts+1): the most texts, at least one,
// that hold at most maxTokens tokens and maxTexts texts together. A text
// longer than maxTokens is a chunk of its own (the encoder never has one:
// MaxTokens is at least max_position_embeddings).
func nextChunk(start []int32, r0, maxTokens, maxTexts int) int {
	n := len(start) - 1
	r1 := r0 + 1
	for r1 < n && r1-r0 < maxTexts && int(start[r1+1]-start[r0]) <= maxTokens {
		r1++
	}
	return r1
}

// inputLayout is where a chunk of t tokens and b texts puts its int32
// inputs, contiguous so that one copy moves them: ids [t], types [t],
// pos [t], start [b+1]. Offsets are in int32 elements.
type inputLayout struct {
	types, pos, start, len int
}

func layoutInputs(t, b int) inputLayout {
	return inputLayout{types: t, pos: 2 * t, start: 3 * t, len: 3*t + b + 1}
}

// resultLayout is where the pool kernel of a chunk of b texts and dims
// dims puts its results, contiguous so that one copy brings them back:
// out [b, dims] float32 at 0, norms [b] float32, scales [b] float32, codes
// [b, dims] int8. Offsets and sizes are in bytes; bytes is what is copied
// back (without scales and codes when the run does not quantize).
type resultLayout struct {
	norms, scales, codes, bytes int
}

func layoutResults(b, dims int, quantize bool) resultLayout {
	n := b * dims
	l := resultLayout{norms: 4 * n, scales: 4 * (n + b), codes: 4 * (n + 2*b)}
	l.bytes = 4 * (n + b)
	if quantize {
		l.bytes = 4*(n+2*b) + n
	}
	return l
}

// resultBytes is the room the results of up to texts texts of up to hidden
// dims need: layoutResults(texts, hidden, true).bytes.
func resultBytes(texts, hidden int) int64 {
	return 4*(int64(texts)*int64(hidden)+2*int64(texts)) + int64(texts)*int64(hidden)
}
