package index

// Limits bound one request of the vectors flow (Upsert, Search, Get,
// Delete, UpsertHybrid); validate.go checks them before any embedding or
// store call, and an error names the item, its index and the limit. The
// stores enforce no request limits; they check only the data model, whose
// bounds are package store's and not repeated here: id bytes
// (store.MaxIDBytes), dims (store.MaxDims), metadata bytes
// (store.MaxMetaBytes), hits per search (store.MaxTopK).
type Limits struct {
	// MaxItems is the most items one Upsert, and the most ids one Get,
	// Delete or UpsertHybrid, may carry. Default 256; zero or negative
	// means the default.
	MaxItems int
	// MaxFeatures is the most numeric features one item or query may
	// carry. Default 256; zero or negative means the default.
	MaxFeatures int
	// MaxFeatureName is the longest feature name, in bytes. Default 128;
	// zero or negative means the default.
	MaxFeatureName int
	// MaxFilterBytes is the longest search filter, in bytes. Default
	// 4096; zero or negative means the default.
	MaxFilterBytes int
	// MaxOversample is the largest oversample factor a rescoring search
	// may ask for. Default 16; zero or negative means the default.
	MaxOversample int
	// DefaultOversample is the oversample factor of a rescoring search
	// that asks for none (0), at most MaxOversample. Default 4; zero or
	// negative means the default.
	DefaultOversample int
}

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits {
	return Limits{MaxItems: 256, MaxFeatures: 256, MaxFeatureName: 128, MaxFilterBytes: 4096, MaxOversample: 16, DefaultOversample: 4}
}

// withDefaults fills the zero or negative fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	l.MaxItems = positive(l.MaxItems, d.MaxItems)
	l.MaxFeatures = positive(l.MaxFeatures, d.MaxFeatures)
	l.MaxFeatureName = positive(l.MaxFeatureName, d.MaxFeatureName)
	l.MaxFilterBytes = positive(l.MaxFilterBytes, d.MaxFilterBytes)
	l.MaxOversample = positive(l.MaxOversample, d.MaxOversample)
	l.DefaultOversample = min(positive(l.DefaultOversample, d.DefaultOversample), l.MaxOversample)
	return l
}

// positive returns v, or d when v is zero or negative.
func positive(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}
