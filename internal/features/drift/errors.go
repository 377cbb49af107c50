package drift

import "errors"

// Errors returned by this package. They are wrapped with the feature name,
// the index and the limit involved; test for them with errors.Is.
var (
	// ErrInvalidOptions reports an Options or StatsOptions field out of
	// range.
	ErrInvalidOptions = errors.New("drift: invalid options")
	// ErrInvalidInput reports a bad argument: an empty or over-long feature
	// name, a sample over MaxKSSample, bins out of range, mismatched
	// proportions.
	ErrInvalidInput = errors.New("drift: invalid input")
	// ErrNotFinite reports a NaN or infinite value; a missing value is a
	// null (Stats.AddNull, features.Value.Null), never a NaN.
	ErrNotFinite = errors.New("drift: value is not finite")
	// ErrTooManyFeatures reports a Track that would exceed
	// Options.MaxFeatures (itself at most MaxFeatures).
	ErrTooManyFeatures = errors.New("drift: too many monitored features")
	// ErrUnknownFeature reports an observation or reference for a feature
	// that was never tracked.
	ErrUnknownFeature = errors.New("drift: unknown feature")
	// ErrInsufficientData reports an empty sample where one is required.
	ErrInsufficientData = errors.New("drift: insufficient data")
	// ErrIncompatible reports a Merge of Stats with different sample sizes.
	ErrIncompatible = errors.New("drift: incompatible statistics")
	// ErrSnapshot reports a malformed reference snapshot (JSON): bad
	// version, counts that disagree, a sample larger than its limit.
	ErrSnapshot = errors.New("drift: bad reference snapshot")
)

// Limits. Every input is bounded by one of these.
const (
	// MaxFeatures is the hard upper bound on monitored features per
	// Monitor; Options.MaxFeatures may lower it.
	MaxFeatures = 4096
	// MaxNameBytes bounds a feature name.
	MaxNameBytes = 256
	// MaxSampleSize bounds StatsOptions.SampleSize (the reservoir).
	MaxSampleSize = 1 << 16
	// MaxKSSample bounds each sample given to KSTest and the bin functions.
	MaxKSSample = 1 << 20
	// MaxBins bounds the number of PSI bins.
	MaxBins = 1000
	// MaxBuckets bounds Options.Buckets.
	MaxBuckets = 1440
	// MaxSnapshotBytes bounds a reference snapshot read by LoadReferences.
	MaxSnapshotBytes = 256 << 20
)
