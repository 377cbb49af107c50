// Package drift monitors numeric features: per-feature statistics (count,
// null rate, mean, standard deviation, min, max, p50/p90/p99) over a frozen
// reference window and a sliding current window, and the drift of the
// current window against the reference as a population stability index
// (PSI) and a two-sample Kolmogorov-Smirnov test. Reports come from
// Monitor.Report/Reports (the core call a drift RPC translates; this
// package does not import grpc) and are exported as Prometheus gauges by
// Collector.
//
// Pieces:
//   - Stats: streaming statistics in bounded memory (Welford mean and
//     variance, exact min/max, a seeded uniform reservoir of SampleSize
//     values for quantiles, PSI and KS). Mergeable.
//   - KSTest: scipy.stats.ks_2samp(method="asymp") of SciPy 1.16, D and
//     p-value; the p-value is the exact one-sample Kolmogorov distribution
//     kstwo.sf(D, round(n*m/(n+m))) computed by SciPy's own algorithm switch.
//   - Bins/PSI: bins fixed from the reference quantiles (10 by default,
//     deduplicated under ties), an epsilon floor (1e-4) for empty bins;
//     status stable below 0.1, moderate below 0.2, significant from 0.2,
//     thresholds configurable.
//   - Monitor: per tracked feature, a reference (SetReference, the first
//     AutoReference values, or LoadReferences from JSON) and a current
//     window of Buckets tumbling sub-buckets spanning Window, keyed by the
//     injected features.Clock.
//   - Collector: the embedd_feature_* gauges on an injected registry.
//
// Invariants:
//   - Memory is bounded: at most Options.MaxFeatures (<= MaxFeatures)
//     features, each holding at most Buckets+2 reservoirs of SampleSize
//     values; every input size is bounded by a documented constant.
//   - A reference is immutable once frozen; setting a new one replaces it.
//   - Values are finite; a missing value is a null, counted in the null
//     rate and excluded from every other statistic.
//   - Given Options.Seed and the same sequence of observations and clock
//     readings, every Stats, report and metric is reproducible.
//   - Drift is computed on the reservoirs: exact while a window holds at
//     most SampleSize values, a uniform-sample estimate beyond. Two samples
//     of k values from the same distribution give E[PSI] ~ (B-1)(2/k), about
//     0.009 for B=10 bins and k=2048, far below the 0.1 threshold.
//
// Concurrency: Monitor and Collector are safe for concurrent use; Stats is
// not (one owner, or the Monitor's locks).
package drift
