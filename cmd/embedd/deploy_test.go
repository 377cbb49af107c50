package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// The deploy files (deploy/compose.yaml, deploy/k8s/embedd-*.yaml, the
// Prometheus rules and the Grafana dashboard) are checked here against the
// real server, so they cannot drift from it silently: their embedd
// arguments and EMBEDD_* variables must be flags of `embedd serve`, their
// probes must name its health services, and every metric they query must
// be in its /metrics output. scripts/kubeconform.sh validates the k8s
// manifests against the Kubernetes schemas; compose.yaml is validated
// here against the Compose Specification's JSON schema by compose-go (the
// library docker compose loads files with; it embeds the schema).

const deployDir = "../../deploy"

// serveFlags parses args (and EMBEDD_* variables in env) as `embedd
// serve` would, reporting unknown flags and bad values.
func serveFlags(args []string, env map[string]string) error {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("arguments left after the flags: %q", fs.Args())
	}
	var errs []error
	for k, v := range env {
		name, ok := strings.CutPrefix(k, "EMBEDD_")
		if !ok {
			continue
		}
		flagName := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if fs.Lookup(flagName) == nil {
			errs = append(errs, fmt.Errorf("%s: serve has no flag --%s", k, flagName))
			continue
		}
		if err := fs.Set(flagName, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", k, v, err))
		}
	}
	return errors.Join(errs...)
}

func loadCompose(t *testing.T, name string, content []byte) (*types.Project, error) {
	t.Helper()
	wd, err := filepath.Abs(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  wd,
		ConfigFiles: []types.ConfigFile{{Filename: name, Content: content}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("embedd", true) })
}

// TestComposeFile: compose.yaml is valid by the Compose Specification's
// schema, its embedd command and environment are serve's flags, and the
// files it mounts exist.
func TestComposeFile(t *testing.T) {
	// The validator rejects what it must: an unknown service key.
	if _, err := loadCompose(t, "bad.yaml", []byte("services:\n  a:\n    image: x\n    portz: [1]\n")); err == nil || !strings.Contains(err.Error(), "portz") {
		t.Fatalf("a service with an unknown key: got %v; want a schema error naming it", err)
	}
	data, err := os.ReadFile(filepath.Join(deployDir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := loadCompose(t, "compose.yaml", data)
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, want := range []string{"embedd", "redis", "milvus", "prometheus", "grafana"} {
		if _, err := p.GetService(want); err != nil {
			t.Errorf("compose.yaml: %v", err)
		}
	}
	e, err := p.GetService("embedd")
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Command) == 0 || e.Command[0] != "serve" {
		t.Fatalf("embedd command %q; want serve ...", e.Command)
	}
	env := map[string]string{}
	for k, v := range e.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	if err := serveFlags(e.Command[1:], env); err != nil {
		t.Errorf("compose.yaml embedd: %v", err)
	}
	if e.Build == nil || e.Build.Dockerfile != "Dockerfile" {
		t.Errorf("embedd build %+v; want the CPU Dockerfile", e.Build)
	} else if _, err := os.Stat(filepath.Join(e.Build.Context, e.Build.Dockerfile)); err != nil {
		t.Errorf("embedd build: %v", err)
	}
	for _, name := range []string{"prometheus", "grafana"} {
		s, _ := p.GetService(name)
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s: %v", name, v.Source, err)
			}
		}
	}
	// Prometheus scrapes embedd's metrics port.
	prom, err := os.ReadFile(filepath.Join(deployDir, "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(prom), `"embedd:9090"`) || !slices.Contains(e.Command, "--metrics-addr=0.0.0.0:9090") {
		t.Error("prometheus.yml does not scrape embedd:9090, or embedd does not serve its metrics there")
	}
}

// k8sDocs reads the YAML documents of a manifest file.
func k8sDocs(t *testing.T, name string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(deployDir, "k8s", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return docs
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// path walks nested maps and lists: keys are strings, list indexes ints.
func path(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestK8sServerManifests: the Deployment runs `embedd serve` with its real
// flags and the ConfigMap's variables, probes its real health services on
// its gRPC port, and the Service and PodDisruptionBudget select its pods.
func TestK8sServerManifests(t *testing.T) {
	cm := k8sDocs(t, "embedd-configmap.yaml")[0]
	env := map[string]string{}
	for k, v := range path(cm, "data").(map[string]any) {
		env[k] = fmt.Sprint(v)
	}
	dep := k8sDocs(t, "embedd-deployment.yaml")[0]
	c := path(dep, "spec", "template", "spec", "containers", 0)
	var args []string
	for _, a := range path(c, "args").([]any) {
		args = append(args, a.(string))
	}
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("deployment args %q; want serve ...", args)
	}
	if err := serveFlags(args[1:], env); err != nil {
		t.Errorf("deployment + configmap: %v", err)
	}
	if got := path(c, "envFrom", 0, "configMapRef", "name"); got != path(cm, "metadata", "name") {
		t.Errorf("deployment reads configmap %v; want %v", got, path(cm, "metadata", "name"))
	}
	grpcPort := 50051
	if !slices.Contains(args, fmt.Sprintf("--addr=0.0.0.0:%d", grpcPort)) {
		t.Errorf("deployment args %q: want --addr=0.0.0.0:%d", args, grpcPort)
	}
	services := []string{"", embeddv1.EmbeddingService_ServiceDesc.ServiceName, vectorService, featureService, jobService}
	for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
		port, service := path(c, probe, "grpc", "port"), path(c, probe, "grpc", "service")
		if port != grpcPort {
			t.Errorf("%s port %v; want %d", probe, port, grpcPort)
		}
		if s, ok := service.(string); !ok || !slices.Contains(services, s) {
			t.Errorf("%s service %v; want one of %q", probe, service, services)
		}
	}
	// Liveness must not depend on the stores: the embedding service only.
	if got := path(c, "livenessProbe", "grpc", "service"); got != embeddv1.EmbeddingService_ServiceDesc.ServiceName {
		t.Errorf("livenessProbe service %v; want %s (needs no store)", got, embeddv1.EmbeddingService_ServiceDesc.ServiceName)
	}
	if path(c, "resources", "requests", "cpu") == nil || path(c, "resources", "requests", "memory") == nil {
		t.Error("deployment: no CPU or memory request")
	}
	labels := path(dep, "spec", "template", "metadata", "labels").(map[string]any)
	svc := k8sDocs(t, "embedd-service.yaml")[0]
	pdb := k8sDocs(t, "embedd-pdb.yaml")[0]
	for name, sel := range map[string]any{
		"service":                  path(svc, "spec", "selector"),
		"pdb":                      path(pdb, "spec", "selector", "matchLabels"),
		"deployment spec.selector": path(dep, "spec", "selector", "matchLabels"),
	} {
		m, _ := sel.(map[string]any)
		if len(m) == 0 {
			t.Errorf("%s selects nothing", name)
		}
		for k, v := range m {
			if labels[k] != v {
				t.Errorf("%s selects %s=%v; the pods have %v", name, k, v, labels[k])
			}
		}
	}
	if path(svc, "spec", "clusterIP") != "None" {
		t.Error("service: want headless (clusterIP: None), so that clients balance over the pods")
	}
}

// promNames finds the metric names a PromQL expression selects, with the
// label names each selector matches on; byLabels are the labels of by,
// without, on and ignoring clauses.
var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promSelector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}|([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	promMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "Inf": true, "NaN": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
)

func promNames(expr string) (selectors map[string][]string, byLabels []string) {
	selectors = map[string][]string{}
	expr = promString.ReplaceAllString(expr, `""`)
	expr = promRange.ReplaceAllString(expr, "")
	for _, m := range promGrouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				byLabels = append(byLabels, l)
			}
		}
	}
	expr = promGrouping.ReplaceAllString(expr, "")
	for _, loc := range promSelector.FindAllStringSubmatchIndex(expr, -1) {
		name, matchers := "", ""
		if loc[2] >= 0 {
			name = expr[loc[2]:loc[3]]
		}
		if loc[4] >= 0 {
			matchers = expr[loc[4]:loc[5]]
		}
		if loc[6] >= 0 {
			name = expr[loc[6]:loc[7]]
			rest := strings.TrimLeft(expr[loc[7]:], " \t\n")
			if strings.HasPrefix(rest, "(") || promKeywords[name] { // a function or a keyword
				continue
			}
		}
		if name == "" {
			continue
		}
		if loc[0] > 0 && (expr[loc[0]-1] == '$' || (expr[loc[0]-1] >= '0' && expr[loc[0]-1] <= '9') || expr[loc[0]-1] == '.') {
			continue // a Grafana variable, or part of a number
		}
		if name[0] >= '0' && name[0] <= '9' {
			continue
		}
		var labels []string
		for _, m := range promMatcher.FindAllStringSubmatch(matchers, -1) {
			labels = append(labels, m[1])
		}
		selectors[name] = append(selectors[name], labels...)
	}
	return selectors, byLabels
}

func TestPromNames(t *testing.T) {
	for _, tc := range []struct {
		expr     string
		want     map[string][]string
		wantByLe []string
	}{
		{`sum by (method, code) (rate(embedd_requests_total{code!="OK"}[$__rate_interval]))`, map[string][]string{"embedd_requests_total": {"code"}}, []string{"method", "code"}},
		{`histogram_quantile(0.99, sum by (le) (rate(x_bucket{method="Embed", model=~"a|b"}[5m]))) > 0.5`, map[string][]string{"x_bucket": {"method", "model"}}, []string{"le"}},
		{`a / on (instance) group_left b + 1e3 and c offset 5m`, map[string][]string{"a": nil, "b": nil, "c": nil}, []string{"instance"}},
		{`up{job="embedd"} == 0`, map[string][]string{"up": {"job"}}, nil},
	} {
		got, by := promNames(tc.expr)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || fmt.Sprint(by) != fmt.Sprint(tc.wantByLe) {
			t.Errorf("%s: got %v by %v; want %v by %v", tc.expr, got, by, tc.want, tc.wantByLe)
		}
	}
}

// dashboardExprs returns the queries of the Grafana dashboard and the
// Prometheus rules, by where they are.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	raw, err := os.ReadFile(filepath.Join(deployDir, "grafana", "dashboards", "embedd.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Query any
			}
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("embedd.json: %v", err)
	}
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("dashboard panel %q target %d", p.Title, i)] = tg.Expr
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok {
			out[fmt.Sprintf("dashboard variable %q", v.Name)] = q
		}
	}
	raw, err = os.ReadFile(filepath.Join(deployDir, "prometheus", "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct{ Alert, Record, Expr string }
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("rules.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out[fmt.Sprintf("rule %s/%s%s", g.Name, r.Alert, r.Record)] = r.Expr
		}
	}
	return out
}

// scrape reads the names and label names of every sample in the text
// exposition at url.
func scrape(t *testing.T, url string) map[string]map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sample := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s`)
	label := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	out := map[string]map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := sample.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if out[m[1]] == nil {
			out[m[1]] = map[string]bool{}
		}
		for _, l := range label.FindAllStringSubmatch(m[3], -1) {
			out[m[1]][l[1]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDashboardMetricsExist starts the real server, makes every kind of
// call the dashboard shows (embeds, vectors, feature events and reads),
// scrapes /metrics and checks that each metric the dashboard and the
// rules query is there, with the labels they match on. (A model's
// counters, such as dropped and failed runs, exist from its load on, at
// zero.)
func TestDashboardMetricsExist(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	conn, metricsAddr, stop := runServeMetrics(t, testServeConfig(t, "--drift-reference-size", "30"))
	defer stop()
	emb, vec, feat := embeddv1.NewEmbeddingServiceClient(conn), embeddv1.NewVectorServiceClient(conn), embeddv1.NewFeatureServiceClient(conn)
	bg := context.Background()
	for i := 0; i < 2; i++ { // the second one is a cache hit
		if _, err := emb.Embed(bg, &embeddv1.EmbedRequest{Texts: []string{"metrics for the dashboard"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := vec.Upsert(bg, &embeddv1.UpsertRequest{Items: []*embeddv1.Item{{Id: "a", Text: "a document"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := vec.Search(bg, &embeddv1.SearchRequest{Query: &embeddv1.SearchRequest_Text{Text: "document"}, TopK: 1}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var events []*embeddv1.Event
	for i := 0; i < 6; i++ {
		events = append(events, &embeddv1.Event{EntityId: fmt.Sprintf("u%d", i%3), EventType: "purchase", Timestamp: timestamppb.New(now.Add(-time.Duration(i) * time.Second)), Values: map[string]float64{"amount": float64(10 * i)}})
	}
	if _, err := feat.IngestEvents(bg, &embeddv1.IngestEventsRequest{Events: events}); err != nil {
		t.Fatal(err)
	}
	// Served values feed the drift monitor: the first
	// --drift-reference-size of a feature become its reference, and with
	// 30 values (drift.Options.MinCount) in the reference and the current
	// window it has a PSI and a status. 3 values a call, 30 calls.
	for i := 0; i < 30; i++ {
		if _, err := feat.GetFeatures(bg, &embeddv1.GetFeaturesRequest{EntityIds: []string{"u0", "u1", "u2", "nobody"}, Features: []string{"amount_sum_1h", "amount_avg_1h"}}); err != nil {
			t.Fatal(err)
		}
	}
	have := scrape(t, "http://"+metricsAddr+"/metrics")
	// Made by Prometheus for each target, not by embedd.
	targetLabels := map[string]bool{"instance": true, "job": true}
	exprs := dashboardExprs(t)
	if len(exprs) < 15 {
		t.Fatalf("found %d queries in the dashboard and rules; want them all", len(exprs))
	}
	where := make([]string, 0, len(exprs))
	for w := range exprs {
		where = append(where, w)
	}
	sort.Strings(where)
	checked := 0
	for _, w := range where {
		sels, by := promNames(exprs[w])
		if len(sels) == 0 {
			t.Errorf("%s: no metric in %q", w, exprs[w])
		}
		exprLabels := map[string]bool{}
		for name, labels := range sels {
			if name == "up" {
				continue
			}
			got, ok := have[name]
			if !ok {
				t.Errorf("%s: metric %s is not in embedd's /metrics", w, name)
				continue
			}
			checked++
			for l := range got {
				exprLabels[l] = true
			}
			for _, l := range labels {
				if !got[l] && !targetLabels[l] {
					t.Errorf("%s: %s has no label %q (it has %v)", w, name, l, keys(got))
				}
			}
		}
		for _, l := range by {
			if !exprLabels[l] && !targetLabels[l] && len(exprLabels) > 0 {
				t.Errorf("%s: grouping by %q, which none of its metrics has", w, l)
			}
		}
	}
	t.Logf("%d queries, %d metric references checked against %d metrics", len(exprs), checked, len(have))
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
