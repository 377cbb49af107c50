package accel

// BatchDefaults are the batching limits that suit a device kind; a setting
// left at zero by the user takes these.
type BatchDefaults struct {
	// MaxBatchSize is the most texts per model run.
	MaxBatchSize int
	// MaxBatchTokens is the most padded tokens (rows x longest) per run.
	MaxBatchTokens int
	// Workers is the number of model runs in flight at once.
	Workers int
}

// DefaultBatch returns the batching defaults of a device.
//
// CPU: 32 texts and 8192 padded tokens per run, one run at a time. On a CPU
// a run already uses every core (one intra-op thread per core), so a second
// concurrent run only competes for them, and beyond ~32 texts throughput no
// longer grows while latency does.
//
// CUDA: 256 texts and 65536 padded tokens per run (256 texts of 256
// tokens), two runs in flight, so that the host work of one run
// (tokenized inputs in, pooled vectors out, Go-side bookkeeping) overlaps
// the kernels of the other. A small encoder needs batches in the hundreds
// to fill a data-center GPU; the token budget bounds the attention
// activations (batch x heads x seq² floats) to well under a gigabyte for a
// BERT-base-sized model.
func DefaultBatch(d Device) BatchDefaults {
	if d.GPU() {
		return BatchDefaults{MaxBatchSize: 256, MaxBatchTokens: 65536, Workers: 2}
	}
	return BatchDefaults{MaxBatchSize: 32, MaxBatchTokens: 8192, Workers: 1}
}
