package drift

import (
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// gathered indexes a registry's gauges by name and sorted label pairs.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			out[key(mf.GetName(), mt.GetLabel())] = mt.GetGauge().GetValue()
		}
	}
	return out
}

func key(name string, labels []*dto.LabelPair) string {
	var b strings.Builder
	b.WriteString(name)
	for _, l := range labels { // Gather sorts labels by name
		b.WriteString("," + l.GetName() + "=" + l.GetValue())
	}
	return b.String()
}

func TestCollector(t *testing.T) {
	m, _ := newMonitor(t, Options{MinCount: 5})
	reg := prometheus.NewRegistry()
	if _, err := Register(reg, m); err != nil {
		t.Fatal(err)
	}
	if _, err := Register(reg, m); err == nil {
		t.Errorf("second registration on the same registry: got nil error")
	}
	_ = m.Track("price", false)
	_ = m.Track("income", true)
	ref, _ := StatsOf([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, StatsOptions{})
	_ = m.SetReference("price", ref)
	_ = m.SetReference("income", ref)
	for _, v := range []float64{6, 7, 8, 9, 10, 11} {
		_ = m.Observe("price", v)
	}
	_ = m.ObserveNull("price")
	for _, v := range []float64{50, 60} { // 2 < MinCount: withheld for a sensitive feature
		_ = m.Observe("income", v)
	}

	got := gathered(t, reg)
	rp, _ := m.Report("price")
	want := map[string]float64{
		"embedd_feature_count,feature=price,window=current":                  6,
		"embedd_feature_count,feature=price,window=reference":                10,
		"embedd_feature_null_rate,feature=price,window=current":              1.0 / 7,
		"embedd_feature_mean,feature=price,window=current":                   8.5,
		"embedd_feature_mean,feature=price,window=reference":                 5.5,
		"embedd_feature_stddev,feature=price,window=current":                 math.Sqrt(3.5),
		"embedd_feature_quantile,feature=price,quantile=0.5,window=current":  8.5,
		"embedd_feature_quantile,feature=price,quantile=0.9,window=current":  10.5,
		"embedd_feature_quantile,feature=price,quantile=0.99,window=current": 10.95,
		"embedd_feature_psi,feature=price":                                   rp.PSI,
		"embedd_feature_ks_statistic,feature=price":                          0.5,
		"embedd_feature_ks_pvalue,feature=price":                             rp.KS.PValue,
		"embedd_feature_drift_status,feature=price":                          2,
		"embedd_feature_count,feature=income,window=current":                 2,
		"embedd_feature_mean,feature=income,window=reference":                5.5, // 10 values >= MinCount
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: missing", k)
			continue
		}
		if math.Abs(g-w) > 1e-12 {
			t.Errorf("%s: got %v; want %v", k, g, w)
		}
	}
	for _, absent := range []string{
		"embedd_feature_mean,feature=income,window=current", // sensitive, 2 < MinCount
		"embedd_feature_quantile,feature=income,quantile=0.5,window=current",
		"embedd_feature_psi,feature=income", // status unknown: current too small
	} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s: exported; want withheld", absent)
		}
	}
	if rp.PSI < 0.2 || rp.KS.PValue <= 0 || rp.KS.PValue >= 1 {
		t.Errorf("price drift: got PSI %v p %v", rp.PSI, rp.KS.PValue)
	}
	if n := testutil.CollectAndCount(NewCollector(m), "embedd_feature_drift_status"); n != 1 {
		t.Errorf("drift_status series: got %d; want 1", n)
	}
	if err := testutil.CollectAndCompare(NewCollector(m), strings.NewReader(`
# HELP embedd_feature_drift_status Drift status by PSI: 0 stable, 1 moderate, 2 significant.
# TYPE embedd_feature_drift_status gauge
embedd_feature_drift_status{feature="price"} 2
`), "embedd_feature_drift_status"); err != nil {
		t.Error(err)
	}
}

func TestRegisterError(t *testing.T) {
	m, _ := newMonitor(t, Options{})
	reg := prometheus.NewRegistry()
	_ = reg.Register(prometheus.NewGauge(prometheus.GaugeOpts{Name: "embedd_feature_psi", Help: "x"}))
	if _, err := Register(reg, m); err == nil {
		t.Errorf("conflicting registration: got nil error")
	}
}
