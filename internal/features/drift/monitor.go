package drift

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/embedd/embedd/internal/features"
)

// Monitor keeps, per tracked feature, a frozen reference Stats and a
// sliding current window of tumbling sub-buckets, and reports drift of the
// current window against the reference. Time comes from the injected
// features.Clock: a value is counted in the bucket of the time it is
// observed, not of an event timestamp, so late events cannot reopen buckets
// that have aged out.
//
// Concurrency: all methods are safe for concurrent use. Observations on
// different features do not contend; Reports holds each feature's lock only
// while copying its samples.
type Monitor struct {
	clock features.Clock
	opts  Options
	width time.Duration // bucket width, Window / Buckets

	mu       sync.RWMutex // guards the features map (not the features)
	features map[string]*feature
}

type feature struct {
	mu        sync.Mutex // guards every field below
	sensitive bool
	rng       *rand.Rand // reservoir draws of all this feature's Stats
	ref       *frozenRef // nil until a reference is set
	building  *Stats     // the first AutoReference values; nil when off or done
	buckets   []bucket   // ring indexed by bucket number mod Buckets
}

type bucket struct {
	idx   int64 // bucket number: floor(UnixNano / width)
	stats *Stats
}

// frozenRef is a reference with what drift needs precomputed once.
type frozenRef struct {
	stats   *Stats
	summary Summary
	sorted  []float64 // reservoir, sorted
	bins    Bins      // empty when the reference has no values
	props   []float64 // reference proportions per bin
}

// New returns a Monitor that reads time from clock.
func New(clock features.Clock, opts Options) (*Monitor, error) {
	if clock == nil {
		return nil, fmt.Errorf("%w: clock is nil", ErrInvalidOptions)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Monitor{clock: clock, opts: o, width: o.Window / time.Duration(o.Buckets),
		features: make(map[string]*feature)}, nil
}

// Options returns the options in effect (defaults filled in).
func (m *Monitor) Options() Options { return m.opts }

func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: feature name is empty", ErrInvalidInput)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("%w: feature name %.32q... is %d bytes; limit MaxNameBytes=%d", ErrInvalidInput, name, len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: feature name %q is not UTF-8", ErrInvalidInput, name)
	}
	return nil
}

// Track starts monitoring name. sensitive marks a feature whose values are
// personal or confidential: its aggregates are still reported and exported
// (a count, a rate, a mean or a quantile over a window describe the
// population, not an entity), but the Collector withholds its mean, standard
// deviation and quantiles for any window holding fewer than MinCount values,
// where an aggregate could be a single entity's value; min and max are never
// exported for any feature. Tracking a tracked feature only updates its
// sensitive flag. Past Options.MaxFeatures it fails with
// ErrTooManyFeatures.
func (m *Monitor) Track(name string, sensitive bool) error {
	if err := checkName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.features[name]; ok {
		f.mu.Lock()
		f.sensitive = sensitive
		f.mu.Unlock()
		return nil
	}
	if len(m.features) >= m.opts.MaxFeatures {
		return fmt.Errorf("%w: tracking %q would make %d; limit Options.MaxFeatures=%d (hard limit MaxFeatures=%d)",
			ErrTooManyFeatures, name, len(m.features)+1, m.opts.MaxFeatures, MaxFeatures)
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	m.features[name] = &feature{
		sensitive: sensitive,
		rng:       rand.New(rand.NewPCG(m.opts.Seed, h.Sum64())),
		buckets:   make([]bucket, m.opts.Buckets),
	}
	return nil
}

// Untrack stops monitoring name and drops its data; it reports whether name
// was tracked.
func (m *Monitor) Untrack(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.features[name]
	delete(m.features, name)
	return ok
}

// Features returns the tracked feature names, sorted.
func (m *Monitor) Features() []string {
	m.mu.RLock()
	names := make([]string, 0, len(m.features))
	for n := range m.features {
		names = append(names, n)
	}
	m.mu.RUnlock()
	slices.Sort(names)
	return names
}

func (m *Monitor) lookup(name string) (*feature, error) {
	f, ok := m.features[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not tracked", ErrUnknownFeature, name)
	}
	return f, nil
}

// Observe records a non-null value of name at the clock's current time.
func (m *Monitor) Observe(name string, x float64) error {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return fmt.Errorf("%w: feature %q value %v", ErrNotFinite, name, x)
	}
	return m.observe(name, x, false)
}

// ObserveNull records a missing value of name.
func (m *Monitor) ObserveNull(name string) error { return m.observe(name, 0, true) }

func (m *Monitor) observe(name string, x float64, null bool) error {
	idx := m.bucketIndex(m.clock.Now())
	m.mu.RLock()
	defer m.mu.RUnlock()
	f, err := m.lookup(name)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m.add(f, idx, x, null)
	return nil
}

// ObserveValues records served feature values (features.Value.Null is a
// missing value). The batch is validated as a whole first: an untracked
// name or a non-finite non-null value fails it, naming the index, and
// nothing is recorded.
func (m *Monitor) ObserveValues(vals []features.Value) error {
	idx := m.bucketIndex(m.clock.Now())
	m.mu.RLock()
	defer m.mu.RUnlock()
	fs := make([]*feature, len(vals))
	for i, v := range vals {
		f, err := m.lookup(v.Name)
		if err != nil {
			return fmt.Errorf("values[%d]: %w", i, err)
		}
		if !v.Null && (math.IsNaN(v.Value) || math.IsInf(v.Value, 0)) {
			return fmt.Errorf("values[%d]: %w: feature %q value %v", i, ErrNotFinite, v.Name, v.Value)
		}
		fs[i] = f
	}
	for i, v := range vals {
		f := fs[i]
		f.mu.Lock()
		m.add(f, idx, v.Value, v.Null)
		f.mu.Unlock()
	}
	return nil
}

func (m *Monitor) bucketIndex(t time.Time) int64 {
	ns, w := t.UnixNano(), int64(m.width)
	q := ns / w
	if ns%w < 0 {
		q-- // floor for times before 1970
	}
	return q
}

func (m *Monitor) newStats(rng *rand.Rand) *Stats {
	// Options were validated, so this cannot fail.
	s, _ := NewStats(StatsOptions{SampleSize: m.opts.SampleSize, Rand: rng})
	return s
}

// add records one value; f.mu is held. x is finite when !null.
func (m *Monitor) add(f *feature, idx int64, x float64, null bool) {
	b := &f.buckets[m.slot(idx)]
	if b.stats == nil {
		b.stats = m.newStats(f.rng)
		b.idx = idx
	} else if b.idx != idx {
		b.stats.Reset()
		b.idx = idx
	}
	if null {
		b.stats.AddNull()
	} else {
		_ = b.stats.Add(x)
	}

	if f.ref != nil || m.opts.AutoReference == 0 {
		return
	}
	if f.building == nil {
		f.building = m.newStats(f.rng)
	}
	if null {
		f.building.AddNull()
		return
	}
	_ = f.building.Add(x)
	if f.building.Count() >= int64(m.opts.AutoReference) {
		f.ref = freeze(f.building, m.opts.Bins)
		f.building = nil
	}
}

// freeze precomputes the reference's sorted sample, bins and proportions.
// It takes ownership of s.
func freeze(s *Stats, bins int) *frozenRef {
	r := &frozenRef{stats: s, sorted: sortedCopy(s.sample)}
	r.summary = s.summarySorted(r.sorted)
	if len(r.sorted) > 0 {
		r.bins = binsSorted(r.sorted, bins)
		r.props = r.bins.Proportions(r.sorted)
	}
	return r
}

// SetReference freezes a copy of ref as name's reference window, replacing
// any earlier one (and stopping AutoReference collection for it). ref may
// have any SampleSize.
func (m *Monitor) SetReference(name string, ref *Stats) error {
	if ref == nil {
		return fmt.Errorf("%w: reference for %q is nil", ErrInvalidInput, name)
	}
	frozen := freeze(ref.Clone(nil), m.opts.Bins)
	m.mu.RLock()
	defer m.mu.RUnlock()
	f, err := m.lookup(name)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.ref, f.building = frozen, nil
	f.mu.Unlock()
	return nil
}

// Reference returns a copy of name's reference and whether one is set.
func (m *Monitor) Reference(name string) (*Stats, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	f, err := m.lookup(name)
	if err != nil {
		return nil, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ref == nil {
		return nil, false, nil
	}
	return f.ref.stats.Clone(nil), true, nil
}

// Report is the drift report of one feature, what the drift RPC returns and
// the Collector exports.
type Report struct {
	Feature   string
	Sensitive bool
	// HasReference is false until a reference is set or auto-collected;
	// Reference is then all zeros.
	HasReference bool
	Reference    Summary
	// Current summarises the window [WindowStart, WindowEnd).
	Current                Summary
	WindowStart, WindowEnd time.Time
	// Status is the PSI verdict; StatusUnknown when Reason says why not.
	Status Status
	Reason string
	// PSI of the current window's reservoir against the reference bins
	// (NaN when Status is StatusUnknown); Bins is the number of bins after
	// deduplication.
	PSI  float64
	Bins int
	// KS compares the reference and current reservoirs (zero, with a NaN
	// p-value, when Status is StatusUnknown). It is reported beside PSI,
	// not folded into Status: with thousands of values the KS test flags
	// differences too small to matter, which PSI's thresholds do not.
	KS KSResult
}

// Report returns the drift report of name at the clock's current time.
func (m *Monitor) Report(name string) (Report, error) {
	now := m.clock.Now()
	m.mu.RLock()
	f, err := m.lookup(name)
	m.mu.RUnlock()
	if err != nil {
		return Report{}, err
	}
	return m.report(name, f, now), nil
}

// Reports returns the reports of every tracked feature, sorted by name, all
// at one clock reading.
func (m *Monitor) Reports() []Report {
	now := m.clock.Now()
	m.mu.RLock()
	type nf struct {
		name string
		f    *feature
	}
	all := make([]nf, 0, len(m.features))
	for n, f := range m.features {
		all = append(all, nf{n, f})
	}
	m.mu.RUnlock()
	slices.SortFunc(all, func(a, b nf) int { return cmp.Compare(a.name, b.name) })
	out := make([]Report, len(all))
	for i, x := range all {
		out[i] = m.report(x.name, x.f, now)
	}
	return out
}

func (m *Monitor) slot(idx int64) int {
	n := int64(m.opts.Buckets)
	return int((idx%n + n) % n)
}

// report is the feature's report with the sensitive-feature rule applied:
// the one place it is applied, so metrics and RPCs cannot disagree.
func (m *Monitor) report(name string, f *feature, now time.Time) Report {
	r := m.rawReport(name, f, now)
	if !r.Sensitive {
		return r
	}
	min := int64(m.opts.MinCount)
	for _, s := range []*Summary{&r.Current, &r.Reference} {
		if s.Count < min && (s != &r.Reference || r.HasReference) {
			s.withhold()
		}
	}
	if r.Current.Withheld || r.Reference.Withheld {
		r.Reason = strings.TrimPrefix(r.Reason+fmt.Sprintf("; sensitive feature: statistics of a window with fewer than %d values withheld", min), "; ")
	}
	return r
}

func (m *Monitor) rawReport(name string, f *feature, now time.Time) Report {
	nowIdx := m.bucketIndex(now)
	first := nowIdx - int64(m.opts.Buckets) + 1
	// The window merge draws from a source keyed by the bucket number, so a
	// report is a function of the data and the time, not of earlier
	// reports.
	cur := m.newStats(rand.New(rand.NewPCG(m.opts.Seed, uint64(nowIdx))))

	f.mu.Lock()
	r := Report{Feature: name, Sensitive: f.sensitive, Status: StatusUnknown, PSI: math.NaN(),
		KS:          KSResult{PValue: math.NaN()},
		WindowStart: time.Unix(0, first*int64(m.width)).UTC(), WindowEnd: time.Unix(0, (nowIdx+1)*int64(m.width)).UTC()}
	for idx := first; idx <= nowIdx; idx++ { // oldest first
		if b := &f.buckets[m.slot(idx)]; b.stats != nil && b.idx == idx {
			_ = cur.Merge(b.stats) // same SampleSize by construction
		}
	}
	ref := f.ref // immutable once frozen; replaced, never modified
	f.mu.Unlock()

	curSorted := sortedCopy(cur.sample)
	r.Current = cur.summarySorted(curSorted)
	switch {
	case ref == nil:
		r.Reason = "no reference"
		return r
	case ref.stats.Count() < int64(m.opts.MinCount):
		r.HasReference, r.Reference = true, ref.summary
		r.Reason = fmt.Sprintf("reference has %d values; need Options.MinCount=%d", ref.stats.Count(), m.opts.MinCount)
		return r
	case cur.Count() < int64(m.opts.MinCount):
		r.HasReference, r.Reference = true, ref.summary
		r.Reason = fmt.Sprintf("current window has %d values; need Options.MinCount=%d", cur.Count(), m.opts.MinCount)
		return r
	}
	r.HasReference, r.Reference = true, ref.summary
	psi, err := PSI(ref.props, ref.bins.Proportions(curSorted), m.opts.Epsilon)
	if err != nil { // cannot happen: same bins, validated epsilon
		r.Reason = err.Error()
		return r
	}
	r.PSI, r.Bins = psi, ref.bins.Len()
	r.KS = ksSorted(ref.sorted, curSorted)
	r.Status = Classify(psi, m.opts.PSIModerate, m.opts.PSISignificant)
	return r
}
