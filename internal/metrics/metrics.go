// Package metrics defines embedd's Prometheus metrics and registers them on
// an injected registry (no package globals), so tests and several servers in
// one process never collide.
//
// Names and labels (all prefixed embedd_):
//
//	requests_total{method,model,code}          finished RPCs by gRPC code
//	request_duration_seconds{method,model}      RPC latency histogram
//	texts_total{model,backend}                  texts embedded
//	tokens_total{model,backend}                 tokens embedded (rate() = tokens/s)
//	batch_size{model,backend}                   items per model run (histogram)
//	batch_tokens{model,backend}                 real tokens per model run (histogram)
//	batch_padded_tokens{model,backend}          padded tokens per model run (histogram)
//	batch_duration_seconds{model,backend}       model run time (histogram)
//	queue_wait_seconds{model,backend}           oldest item's wait before its run (histogram)
//	queue_depth{model,priority}                 items waiting for a batch (gauge)
//	dropped_total{model,reason}                 items dropped before compute (deadline, cancel)
//	batch_errors_total{model,backend}           model runs that failed
//	oom_splits_total{model,backend}             batches split in two after the device ran out of memory
//	cpu_retries_total{model,backend}            texts run on the CPU because they did not fit on the GPU
//	model_backend{model,backend,requested,fallback}  1 per loaded model: the backend in use, the
//	                                            provider asked for, and "true" if that one was not available
//	gpu_memory_free_bytes{device}               free GPU memory, read at each scrape (cuda builds only)
//	gpu_memory_total_bytes{device}              total GPU memory, read at each scrape (cuda builds only)
//
// The model label of requests_total and request_duration_seconds names what
// the request named: the model (embedding RPCs), the collection (vector
// RPCs) or the feature set (GetFeatures); "" when it named none. Clients
// choose those strings, so the label only takes names configured with Allow
// (the model catalog, the configured collections, the registry's feature
// sets); any other name counts under Other. The series stay bounded by
// methods x configured names x codes whatever clients send.
//
// The GPU memory gauges exist only where a GPUMemoryFunc is registered
// (RegisterGPUMemory: cmd/embedd does so in binaries built with the `cuda`
// tag); a CPU build has no such series.
//
// Concurrency: every method is safe for concurrent use.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the collectors.
type Metrics struct {
	Requests        *prometheus.CounterVec
	RequestDuration *prometheus.HistogramVec
	Texts           *prometheus.CounterVec
	Tokens          *prometheus.CounterVec
	BatchSize       *prometheus.HistogramVec
	BatchTokens     *prometheus.HistogramVec
	BatchPadded     *prometheus.HistogramVec
	BatchDuration   *prometheus.HistogramVec
	QueueWait       *prometheus.HistogramVec
	QueueDepth      *prometheus.GaugeVec
	Dropped         *prometheus.CounterVec
	BatchErrors     *prometheus.CounterVec
	OOMSplits       *prometheus.CounterVec
	CPURetries      *prometheus.CounterVec
	ModelBackend    *prometheus.GaugeVec

	mu      sync.RWMutex
	allowed [numKinds]map[string]struct{}
}

// Kind says which configured names bound a request's model label.
type Kind int

const (
	// NoName is an RPC that names nothing: the label is always "".
	NoName Kind = iota
	// Model: the label is an embedding model's name.
	Model
	// Collection: the label is a vector collection's name.
	Collection
	// FeatureSet: the label is a feature set's name.
	FeatureSet
	numKinds
)

// Other is the model label of every name not allowed for its kind (a
// configured name "other" shares that series).
const Other = "other"

// Allow makes names valid model label values for kind. Call it with the
// configured names when they are known (serve: after the engine, the
// index and the features service are open); requests naming anything else
// count under Other.
func (m *Metrics) Allow(kind Kind, names ...string) {
	if kind <= NoName || kind >= numKinds {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.allowed[kind] == nil {
		m.allowed[kind] = map[string]struct{}{}
	}
	for _, n := range names {
		m.allowed[kind][n] = struct{}{}
	}
}

// Label returns the model label of a request of kind that named name:
// "" for no name or NoName, name when allowed for kind, else Other.
func (m *Metrics) Label(kind Kind, name string) string {
	if name == "" || kind == NoName {
		return ""
	}
	if kind < 0 || kind >= numKinds {
		return Other
	}
	m.mu.RLock()
	_, ok := m.allowed[kind][name]
	m.mu.RUnlock()
	if ok {
		return name
	}
	return Other
}

// Request records one finished RPC: method is the RPC's (fixed) name,
// kind and name what it named (bounded by Label), code its gRPC code.
func (m *Metrics) Request(method string, kind Kind, name, code string, d time.Duration) {
	label := m.Label(kind, name)
	m.Requests.WithLabelValues(method, label, code).Inc()
	m.RequestDuration.WithLabelValues(method, label).Observe(d.Seconds())
}

// latencyBuckets are the upper bounds, in seconds, of every latency
// histogram: 0.25 ms apart up to 2 ms and 0.5 ms apart up to 5 ms, where a
// CPU model run of a short text and a GPU batch fall, so a p99 read from
// the histogram (as `make bench` does to compare the server's latency with
// the model's own) is within half a bucket there; coarser above, up to
// 10 s. 31 buckets per series.
var latencyBuckets = []float64{
	.00025, .0005, .00075, .001, .00125, .0015, .00175, .002, .0025, .003, .0035, .004, .0045, .005,
	.006, .007, .008, .01, .0125, .015, .02, .03, .05, .075, .1, .2, .5, 1, 2, 5, 10,
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedd_requests_total", Help: "Finished RPCs by method, model and gRPC code.",
		}, []string{"method", "model", "code"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "embedd_request_duration_seconds", Help: "RPC latency.", Buckets: latencyBuckets,
		}, []string{"method", "model"}),
		Texts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedd_texts_total", Help: "Texts embedded.",
		}, []string{"model", "backend"}),
		Tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedd_tokens_total", Help: "Tokens embedded, special tokens included.",
		}, []string{"model", "backend"}),
		BatchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "embedd_batch_size", Help: "Items per model run.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}, []string{"model", "backend"}),
		BatchTokens: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "embedd_batch_tokens", Help: "Real tokens per model run.", Buckets: prometheus.ExponentialBuckets(8, 2, 12),
		}, []string{"model", "backend"}),
		BatchPadded: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "embedd_batch_padded_tokens", Help: "Padded tokens (rows x longest) per model run.", Buckets: prometheus.ExponentialBuckets(8, 2, 12),
		}, []string{"model", "backend"}),
		BatchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "embedd_batch_duration_seconds", Help: "Model run time per batch.", Buckets: latencyBuckets,
		}, []string{"model", "backend"}),
		QueueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "embedd_queue_wait_seconds", Help: "Wait of a batch's oldest item before its run.", Buckets: latencyBuckets,
		}, []string{"model", "backend"}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "embedd_queue_depth", Help: "Items waiting for a batch.",
		}, []string{"model", "priority"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedd_dropped_total", Help: "Items dropped before compute because their caller's context ended.",
		}, []string{"model", "reason"}),
		BatchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedd_batch_errors_total", Help: "Model runs that failed as a whole.",
		}, []string{"model", "backend"}),
		OOMSplits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedd_oom_splits_total", Help: "Batches split in two and retried because the device ran out of memory.",
		}, []string{"model", "backend"}),
		CPURetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedd_cpu_retries_total", Help: "Texts run on the CPU because they did not fit in GPU memory alone.",
		}, []string{"model", "backend"}),
		ModelBackend: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "embedd_model_backend", Help: "1 per loaded model: the backend in use, the provider requested, and fallback=\"true\" when the requested one could not be used (the reason is logged and in ListModels).",
		}, []string{"model", "backend", "requested", "fallback"}),
	}
	reg.MustRegister(m.Requests, m.RequestDuration, m.Texts, m.Tokens, m.BatchSize, m.BatchTokens,
		m.BatchPadded, m.BatchDuration, m.QueueWait, m.QueueDepth, m.Dropped, m.BatchErrors,
		m.OOMSplits, m.CPURetries, m.ModelBackend)
	return m
}

// BatchObserver reports one model's batcher events; it satisfies
// batch.Observer.
type BatchObserver struct {
	size, tokens, padded, duration, wait prometheus.Observer
	texts, tokCount, errs                prometheus.Counter
	oomSplits, cpuRetries                prometheus.Counter
	online, bulk                         prometheus.Gauge
	deadline, canceled                   prometheus.Counter
}

// ForModel returns the observer of one model on one backend.
func (m *Metrics) ForModel(model, backend string) *BatchObserver {
	l := prometheus.Labels{"model": model, "backend": backend}
	return &BatchObserver{
		size: m.BatchSize.With(l), tokens: m.BatchTokens.With(l), padded: m.BatchPadded.With(l),
		duration: m.BatchDuration.With(l), wait: m.QueueWait.With(l),
		texts: m.Texts.With(l), tokCount: m.Tokens.With(l), errs: m.BatchErrors.With(l),
		oomSplits: m.OOMSplits.With(l), cpuRetries: m.CPURetries.With(l),
		online:   m.QueueDepth.WithLabelValues(model, "online"),
		bulk:     m.QueueDepth.WithLabelValues(model, "bulk"),
		deadline: m.Dropped.WithLabelValues(model, "deadline_exceeded"),
		canceled: m.Dropped.WithLabelValues(model, "canceled"),
	}
}

// BatchRun records one model run.
func (o *BatchObserver) BatchRun(size, tokens, padded int, wait, run time.Duration, err error) {
	o.size.Observe(float64(size))
	o.tokens.Observe(float64(tokens))
	o.padded.Observe(float64(padded))
	o.duration.Observe(run.Seconds())
	o.wait.Observe(wait.Seconds())
	if err != nil {
		o.errs.Inc()
		return
	}
	o.texts.Add(float64(size))
	o.tokCount.Add(float64(tokens))
}

// QueueDepth records the waiting items.
func (o *BatchObserver) QueueDepth(online, bulk int) {
	o.online.Set(float64(online))
	o.bulk.Set(float64(bulk))
}

// Dropped records an item dropped before compute.
func (o *BatchObserver) Dropped(reason error) {
	if errors.Is(reason, context.DeadlineExceeded) {
		o.deadline.Inc()
		return
	}
	o.canceled.Inc()
}

// OOMSplit records a batch split after the device ran out of memory.
func (o *BatchObserver) OOMSplit() { o.oomSplits.Inc() }

// CPURetry records a text run on the CPU because it did not fit on the GPU.
func (o *BatchObserver) CPURetry() { o.cpuRetries.Inc() }

// ModelLoaded records the backend a model runs on, the provider that was
// requested, and whether the requested one could not be used.
func (m *Metrics) ModelLoaded(model, backend, requested string, fellBack bool) {
	m.ModelBackend.WithLabelValues(model, backend, requested, fmt.Sprint(fellBack)).Set(1)
}

// GPUMemory is one device's memory, in bytes.
type GPUMemory struct {
	// Device labels the device, e.g. "cuda:0".
	Device      string
	Free, Total int64
}

// GPUMemoryFunc reads the memory of the GPUs in use.
type GPUMemoryFunc func() ([]GPUMemory, error)

// gpuMemoryCollector reports a GPUMemoryFunc's answer at each scrape.
type gpuMemoryCollector struct {
	read        GPUMemoryFunc
	free, total *prometheus.Desc
}

// RegisterGPUMemory registers the gauges embedd_gpu_memory_free_bytes and
// embedd_gpu_memory_total_bytes{device} on reg, read with read at each
// scrape. A nil read registers nothing. When read fails the scrape has no
// GPU memory series (the rest of the page is served).
func RegisterGPUMemory(reg prometheus.Registerer, read GPUMemoryFunc) error {
	if read == nil {
		return nil
	}
	return reg.Register(&gpuMemoryCollector{
		read:  read,
		free:  prometheus.NewDesc("embedd_gpu_memory_free_bytes", "Free GPU memory, read at scrape time.", []string{"device"}, nil),
		total: prometheus.NewDesc("embedd_gpu_memory_total_bytes", "Total GPU memory.", []string{"device"}, nil),
	})
}

func (c *gpuMemoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.free
	ch <- c.total
}

func (c *gpuMemoryCollector) Collect(ch chan<- prometheus.Metric) {
	mem, err := c.read()
	if err != nil {
		return
	}
	for _, m := range mem {
		ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(m.Free), m.Device)
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(m.Total), m.Device)
	}
}
