package drift

import (
	"math"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a Monitor's reports as Prometheus gauges, computed at
// scrape time (one Reports call per scrape):
//
//	embedd_feature_count{feature,window}                 non-null values
//	embedd_feature_null_rate{feature,window}             nulls / (values + nulls)
//	embedd_feature_mean{feature,window}                  mean
//	embedd_feature_stddev{feature,window}                sample standard deviation
//	embedd_feature_quantile{feature,window,quantile}     quantile="0.5"|"0.9"|"0.99"
//	embedd_feature_psi{feature}                          PSI, current vs reference
//	embedd_feature_ks_statistic{feature}                 KS D
//	embedd_feature_ks_pvalue{feature}                    KS p-value
//	embedd_feature_drift_status{feature}                 0 stable, 1 moderate, 2 significant
//
// window is "reference" or "current". A series is omitted while undefined:
// mean and quantiles of an empty window, stddev below two values, the drift
// series while Status is StatusUnknown. For a sensitive feature, mean,
// stddev and quantiles of a window are also omitted while it holds fewer
// than Options.MinCount values (see Monitor.Track).
type Collector struct {
	m *Monitor

	count, nullRate, mean, stddev, quantile *prometheus.Desc
	psi, ksD, ksP, status                   *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector for m; register it with Register or on
// any prometheus.Registerer.
func NewCollector(m *Monitor) *Collector {
	w := []string{"feature", "window"}
	f := []string{"feature"}
	return &Collector{
		m:        m,
		count:    prometheus.NewDesc("embedd_feature_count", "Non-null values of the feature in the window.", w, nil),
		nullRate: prometheus.NewDesc("embedd_feature_null_rate", "Share of null values of the feature in the window.", w, nil),
		mean:     prometheus.NewDesc("embedd_feature_mean", "Mean of the feature in the window.", w, nil),
		stddev:   prometheus.NewDesc("embedd_feature_stddev", "Sample standard deviation of the feature in the window.", w, nil),
		quantile: prometheus.NewDesc("embedd_feature_quantile", "Quantile of the feature in the window (reservoir estimate).", append(w, "quantile"), nil),
		psi:      prometheus.NewDesc("embedd_feature_psi", "Population stability index of the current window against the reference.", f, nil),
		ksD:      prometheus.NewDesc("embedd_feature_ks_statistic", "Two-sample Kolmogorov-Smirnov statistic D, current window against the reference.", f, nil),
		ksP:      prometheus.NewDesc("embedd_feature_ks_pvalue", "Two-sample Kolmogorov-Smirnov p-value (asymptotic), current window against the reference.", f, nil),
		status:   prometheus.NewDesc("embedd_feature_drift_status", "Drift status by PSI: 0 stable, 1 moderate, 2 significant.", f, nil),
	}
}

// Register creates a Collector for m and registers it on reg.
func Register(reg prometheus.Registerer, m *Monitor) (*Collector, error) {
	c := NewCollector(m)
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Describe sends the descriptors of every series the Collector may export.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.count, c.nullRate, c.mean, c.stddev, c.quantile, c.psi, c.ksD, c.ksP, c.status} {
		ch <- d
	}
}

// Collect computes the reports and sends their series.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		if !math.IsNaN(v) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
		}
	}
	for _, r := range c.m.Reports() {
		windows := []struct {
			name string
			s    Summary
		}{{"current", r.Current}}
		if r.HasReference {
			windows = append(windows, struct {
				name string
				s    Summary
			}{"reference", r.Reference})
		}
		for _, w := range windows {
			gauge(c.count, float64(w.s.Count), r.Feature, w.name)
			gauge(c.nullRate, w.s.NullRate, r.Feature, w.name)
			if w.s.Withheld { // a sensitive feature's sparse window
				continue
			}
			gauge(c.mean, w.s.Mean, r.Feature, w.name)
			gauge(c.stddev, w.s.StdDev, r.Feature, w.name)
			for _, q := range []struct {
				p float64
				v float64
			}{{P50, w.s.P50}, {P90, w.s.P90}, {P99, w.s.P99}} {
				gauge(c.quantile, q.v, r.Feature, w.name, strconv.FormatFloat(q.p, 'g', -1, 64))
			}
		}
		if r.Status == StatusUnknown {
			continue
		}
		gauge(c.psi, r.PSI, r.Feature)
		gauge(c.ksD, r.KS.D, r.Feature)
		gauge(c.ksP, r.KS.PValue, r.Feature)
		gauge(c.status, float64(r.Status), r.Feature)
	}
}
