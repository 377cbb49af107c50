package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/embedd/embedd/internal/testassets"
)

// The Kubernetes re-embedding Job (deploy/k8s/reembed-job.yaml): its
// schema is checked by scripts/kubeconform.sh (`make lint-k8s`); these
// tests check what the schema cannot (that the parts agree with each other,
// with the image and with `embedd reembed`) and run the Job's container
// command and environment as N local processes, JOB_COMPLETION_INDEX
// 0..N-1, the way the Job's pods run it.

const k8sDir = "../../deploy/k8s"

// The parts of the manifests the tests read (kubeconform checks the rest).
type k8sObject struct {
	APIVersion string                `yaml:"apiVersion"`
	Kind       string                `yaml:"kind"`
	Metadata   struct{ Name string } `yaml:"metadata"`
	Data       map[string]string     `yaml:"data"`
	Spec       yaml.Node             `yaml:"spec"`
}

type k8sPVCSpec struct {
	AccessModes []string `yaml:"accessModes"`
}

type k8sJobSpec struct {
	CompletionMode          string `yaml:"completionMode"`
	Completions             *int   `yaml:"completions"`
	Parallelism             *int   `yaml:"parallelism"`
	BackoffLimitPerIndex    *int   `yaml:"backoffLimitPerIndex"`
	MaxFailedIndexes        *int   `yaml:"maxFailedIndexes"`
	PodReplacementPolicy    string `yaml:"podReplacementPolicy"`
	TTLSecondsAfterFinished *int   `yaml:"ttlSecondsAfterFinished"`
	PodFailurePolicy        struct {
		Rules []k8sPodFailureRule `yaml:"rules"`
	} `yaml:"podFailurePolicy"`
	Template struct {
		Spec k8sPodSpec `yaml:"spec"`
	} `yaml:"template"`
}

type k8sPodFailureRule struct {
	Action      string `yaml:"action"`
	OnExitCodes *struct {
		ContainerName string `yaml:"containerName"`
		Operator      string `yaml:"operator"`
		Values        []int  `yaml:"values"`
	} `yaml:"onExitCodes"`
	OnPodConditions []struct {
		Type   string `yaml:"type"`
		Status string `yaml:"status"`
	} `yaml:"onPodConditions"`
}

type k8sSecurityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	RunAsGroup               *int64 `yaml:"runAsGroup"`
	FSGroup                  *int64 `yaml:"fsGroup"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Capabilities             struct {
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
	SeccompProfile struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type k8sPodSpec struct {
	RestartPolicy   string             `yaml:"restartPolicy"`
	SecurityContext k8sSecurityContext `yaml:"securityContext"`
	Containers      []k8sContainer     `yaml:"containers"`
	Volumes         []struct {
		Name                  string `yaml:"name"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"persistentVolumeClaim"`
		EmptyDir *struct{} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			ConfigMapKeyRef *struct{ Name, Key string } `yaml:"configMapKeyRef"`
			SecretKeyRef    *struct {
				Name, Key string
				Optional  bool `yaml:"optional"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	SecurityContext k8sSecurityContext `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

// k8sManifests is every object of deploy/k8s/*.yaml.
type k8sManifests struct {
	// job is the re-embedding Job (reembed-job.yaml), container its one
	// container; finalize is the Job of reembed-finalize-job.yaml.
	job, finalize k8sJobSpec
	container     k8sContainer
	configMaps    map[string]map[string]string
	pvcs          map[string]k8sPVCSpec
}

func readK8sManifests(t *testing.T) *k8sManifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", k8sDir, err)
	}
	m := &k8sManifests{configMaps: map[string]map[string]string{}, pvcs: map[string]k8sPVCSpec{}}
	jobs := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o k8sObject
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			switch o.APIVersion + " " + o.Kind {
			case "v1 ConfigMap":
				m.configMaps[o.Metadata.Name] = o.Data
			case "v1 PersistentVolumeClaim":
				var s k8sPVCSpec
				if err := o.Spec.Decode(&s); err != nil {
					t.Fatalf("%s: PVC %s: %v", f, o.Metadata.Name, err)
				}
				m.pvcs[o.Metadata.Name] = s
			case "batch/v1 Job":
				base := filepath.Base(f)
				jobs[base]++
				spec := map[string]*k8sJobSpec{"reembed-job.yaml": &m.job, "reembed-finalize-job.yaml": &m.finalize}[base]
				if spec == nil {
					t.Fatalf("%s: Job %s: a Job in a file the tests do not know", f, o.Metadata.Name)
				}
				if err := o.Spec.Decode(spec); err != nil {
					t.Fatalf("%s: Job %s: %v", f, o.Metadata.Name, err)
				}
			case " ":
			case "apps/v1 Deployment", "v1 Service", "policy/v1 PodDisruptionBudget":
				// The server's manifests: TestK8sServerManifests.
			default:
				t.Fatalf("%s: unexpected object %s %s %s", f, o.APIVersion, o.Kind, o.Metadata.Name)
			}
		}
	}
	if jobs["reembed-job.yaml"] != 1 || jobs["reembed-finalize-job.yaml"] != 1 || len(m.job.Template.Spec.Containers) != 1 || len(m.finalize.Template.Spec.Containers) != 1 {
		t.Fatalf("want one Job with one container in each of reembed-job.yaml and reembed-finalize-job.yaml; got %v", jobs)
	}
	m.container = m.job.Template.Spec.Containers[0]
	return m
}

// argValue returns the value of --name=V or --name V in args.
func argValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// action is what the Job's podFailurePolicy does with a pod of container
// whose exit status is code (rules on pod conditions do not match a
// process that exited by itself): an action, or "Count" by default.
func (m *k8sManifests) action(code int) string {
	for _, r := range m.job.PodFailurePolicy.Rules {
		e := r.OnExitCodes
		if e == nil || (e.ContainerName != "" && e.ContainerName != m.container.Name) {
			continue
		}
		if slices.Contains(e.Values, code) == (e.Operator == "In") {
			return r.Action
		}
	}
	return "Count"
}

// mountOf returns the volume mounted at the path that holds p in the
// re-embedding Job's container.
func (m *k8sManifests) mountOf(p string) (volume, mountPath string, readOnly bool) {
	return mountIn(m.container, p)
}

func mountIn(c k8sContainer, p string) (volume, mountPath string, readOnly bool) {
	for _, vm := range c.VolumeMounts {
		if p == vm.MountPath || strings.HasPrefix(p, vm.MountPath+"/") {
			return vm.Name, vm.MountPath, vm.ReadOnly
		}
	}
	return "", "", false
}

// claimOf returns the PVC of the volume that holds path p in pod's
// container c, and whether it is mounted read-only.
func claimOf(pod k8sPodSpec, c k8sContainer, p string) (claim string, readOnly bool) {
	vol, _, ro := mountIn(c, p)
	for _, v := range pod.Volumes {
		if vol != "" && v.Name == vol && v.PersistentVolumeClaim != nil {
			return v.PersistentVolumeClaim.ClaimName, ro
		}
	}
	return "", ro
}

// TestK8sJobManifest: the parts of the Job agree with each other, with
// `embedd reembed`, with the image (Dockerfile.cuda) and with the state
// PVC; the failure policy maps reembed's exit statuses as documented.
func TestK8sJobManifest(t *testing.T) {
	m := readK8sManifests(t)
	j, c := m.job, m.container
	if j.CompletionMode != "Indexed" || j.Completions == nil || j.Parallelism == nil {
		t.Fatalf("completionMode %q, completions %v, parallelism %v; want Indexed, both set", j.CompletionMode, j.Completions, j.Parallelism)
	}
	shards, _ := argValue(c.Args, "shards")
	if n, err := strconv.Atoi(shards); err != nil || n != *j.Completions || n != *j.Parallelism {
		t.Errorf("--shards %q, completions %d, parallelism %d; want all equal", shards, *j.Completions, *j.Parallelism)
	}
	if _, ok := argValue(c.Args, "shard"); ok {
		t.Error("--shard i/N in a Job: each pod must take i from JOB_COMPLETION_INDEX (--shards N)")
	}
	if len(c.Args) == 0 || c.Args[0] != "reembed" || !slices.Equal(c.Command, []string{"embedd"}) {
		t.Errorf("command %q args %q; want embedd reembed ...", c.Command, c.Args)
	}
	if j.BackoffLimitPerIndex == nil || *j.BackoffLimitPerIndex < 1 || j.TTLSecondsAfterFinished == nil {
		t.Error("want backoffLimitPerIndex >= 1 and ttlSecondsAfterFinished")
	}
	if j.MaxFailedIndexes != nil {
		t.Error("maxFailedIndexes would stop the other shards when shards dead-letter records (exit 1)")
	}
	if j.PodReplacementPolicy != "Failed" || j.Template.Spec.RestartPolicy != "Never" {
		t.Errorf("podReplacementPolicy %q, restartPolicy %q; want Failed (one process per shard at a time), Never", j.PodReplacementPolicy, j.Template.Spec.RestartPolicy)
	}
	// Exit statuses (reembed.Summary.ExitCode, main): 0 done, 1 dead
	// letters (final: FailIndex), 2 could not run (FailJob); SIGKILL and
	// crashes retry the shard.
	for code, want := range map[int]string{1: "FailIndex", 2: "FailJob", 137: "Count", 139: "Count"} {
		if got := m.action(code); got != want {
			t.Errorf("exit %d: podFailurePolicy action %s; want %s", code, got, want)
		}
	}
	// A SIGTERM (eviction, drain) ends the process with status 2: the rule
	// that ignores disruptions must come before the exit-code rules.
	rules := j.PodFailurePolicy.Rules
	if len(rules) == 0 || rules[0].Action != "Ignore" || len(rules[0].OnPodConditions) != 1 || rules[0].OnPodConditions[0].Type != "DisruptionTarget" {
		t.Errorf("first podFailurePolicy rule %+v; want Ignore on DisruptionTarget", rules)
	}
	// The state directory: on a ReadWriteMany PVC declared in deploy/k8s,
	// writable; the sources: read-only; everything else read-only.
	state, _ := argValue(c.Args, "state-dir")
	claim, ro := claimOf(j.Template.Spec, c, state)
	if pvc, ok := m.pvcs[claim]; state == "" || ro || !ok || !slices.Equal(pvc.AccessModes, []string{"ReadWriteMany"}) {
		t.Errorf("--state-dir %q on claim %q (read-only %v) %+v; want a writable mount of a ReadWriteMany PVC declared in %s", state, claim, ro, pvc, k8sDir)
	}
	if data, _ := argValue(c.Args, "data-dir"); data == "" || func() bool { v, _, _ := m.mountOf(data); return v != "" }() {
		t.Errorf("--data-dir %q: want a path on the read-only root, so that the embedded store can never open", data)
	}
	for _, a := range c.Args[1:] {
		if !strings.HasPrefix(a, "-") {
			if v, _, ro := m.mountOf(a); v == "" || !ro {
				t.Errorf("SOURCE %s: want it on a read-only volume mount", a)
			}
		}
	}
	env := m.env(t, c) // every envFrom and key reference resolves in deploy/k8s
	if env["EMBEDD_MILVUS_ADDR"] == "" || env["EMBEDD_REDIS_ADDR"] == "" {
		t.Errorf("env %v: want EMBEDD_MILVUS_ADDR and EMBEDD_REDIS_ADDR (shards of one job run concurrently only on server stores)", env)
	}
	dockerfile, err := os.ReadFile("../../Dockerfile.cuda")
	if err != nil {
		t.Fatal(err)
	}
	checkK8sSecurity(t, "reembed-job.yaml", string(dockerfile), j.Template.Spec, c)
	// The model is one the image carries.
	model, _ := argValue(c.Args, "model")
	models := regexp.MustCompile(`(?m)^ARG MODELS="([^"]*)"$`).FindStringSubmatch(string(dockerfile))
	if models == nil || !slices.Contains(strings.Fields(models[1]), model) {
		t.Errorf("--model %q: want one of the image's MODELS %v", model, models)
	}
	// Every flag is one `embedd reembed` knows.
	var rc reembedConfig
	fs := newFlagSet("reembed", "")
	rc.register(fs)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(c.Args[1:]); err != nil {
		t.Errorf("args: %v", err)
	}
	// The finalize Job: `embedd reembed finalize` of this job, in the same
	// image, with the same stores, state and collection.
	fj := m.finalize
	fc := fj.Template.Spec.Containers[0]
	if !slices.Equal(fc.Command, c.Command) || len(fc.Args) < 2 || !slices.Equal(fc.Args[:2], []string{"reembed", "finalize"}) || fc.Image != c.Image || fj.Template.Spec.RestartPolicy != "Never" {
		t.Errorf("finalize Job: image %s, command %q, args %q; want the Job's image, embedd reembed finalize ...", fc.Image, fc.Command, fc.Args)
	}
	for _, name := range []string{"collection", "model", "state-dir", "data-dir"} {
		if a, _ := argValue(c.Args, name); a != func() string { v, _ := argValue(fc.Args, name); return v }() {
			t.Errorf("finalize Job: --%s differs from the Job's %q", name, a)
		}
	}
	if fclaim, ro := claimOf(fj.Template.Spec, fc, state); fclaim != claim || ro {
		t.Errorf("finalize Job: the state dir on claim %q (read-only %v); want the Job's %q, writable", fclaim, ro, claim)
	}
	if fenv := m.env(t, fc); fenv["EMBEDD_MILVUS_ADDR"] != env["EMBEDD_MILVUS_ADDR"] || fenv["EMBEDD_REDIS_ADDR"] != env["EMBEDD_REDIS_ADDR"] {
		t.Errorf("finalize Job: stores %v; want the Job's", fenv)
	}
	checkK8sSecurity(t, "reembed-finalize-job.yaml", string(dockerfile), fj.Template.Spec, fc)
}

// checkK8sSecurity: non-root as the image's user, read-only root, no
// capabilities, no privilege escalation, RuntimeDefault seccomp.
func checkK8sSecurity(t *testing.T, file, dockerfile string, pod k8sPodSpec, c k8sContainer) {
	t.Helper()
	uid := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindStringSubmatch(dockerfile)
	ps, cs := pod.SecurityContext, c.SecurityContext
	if uid == nil || ps.RunAsUser == nil || fmt.Sprint(*ps.RunAsUser) != uid[1] || ps.RunAsGroup == nil || fmt.Sprint(*ps.RunAsGroup) != uid[2] || ps.FSGroup == nil {
		t.Errorf("%s: pod runAsUser/runAsGroup/fsGroup %v %v %v; want the image's USER %v and an fsGroup", file, ps.RunAsUser, ps.RunAsGroup, ps.FSGroup, uid)
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	if !isTrue(ps.RunAsNonRoot) || !isTrue(cs.RunAsNonRoot) || !isTrue(cs.ReadOnlyRootFilesystem) || cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
		!slices.Equal(cs.Capabilities.Drop, []string{"ALL"}) || ps.SeccompProfile.Type != "RuntimeDefault" || cs.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("%s: security context: pod runAsNonRoot %v, seccomp %q; container runAsNonRoot %v, readOnlyRootFilesystem %v, allowPrivilegeEscalation %v, drop %v, seccomp %q; want true, RuntimeDefault; true, true, false, [ALL], RuntimeDefault",
			file, isTrue(ps.RunAsNonRoot), ps.SeccompProfile.Type, isTrue(cs.RunAsNonRoot), isTrue(cs.ReadOnlyRootFilesystem), cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation, cs.Capabilities.Drop, cs.SeccompProfile.Type)
	}
}

// env is the container's environment from the manifests: env values,
// ConfigMap keys (envFrom, configMapKeyRef); optional secrets are left out.
func (m *k8sManifests) env(t *testing.T, c k8sContainer) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef == nil {
			t.Fatalf("envFrom %+v: only configMapRef is supported here", e)
		}
		cm, ok := m.configMaps[e.ConfigMapRef.Name]
		if !ok {
			t.Fatalf("envFrom: ConfigMap %s is not in %s", e.ConfigMapRef.Name, k8sDir)
		}
		for k, v := range cm {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := m.configMaps[ref.Name][ref.Key]
			if !ok {
				t.Fatalf("env %s: ConfigMap key %s/%s is not in %s", e.Name, ref.Name, ref.Key, k8sDir)
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Optional:
		default:
			t.Fatalf("env %s: want a value, a ConfigMap key or an optional secret", e.Name)
		}
	}
	return env
}

// TestK8sReembedJob runs the Job as its pods would: the container's
// command and arguments, its environment (ConfigMap included), one process
// per index with JOB_COMPLETION_INDEX set, all at once against Milvus and
// Redis (one after another on the embedded store, which is one process's),
// sharing one state directory. What differs from a cluster is substituted:
// the binary (built here), the volumes' mount paths (temporary
// directories), the store addresses, the collection's name (one per run),
// the provider (no GPU here: cpu), the threads (2 cores) and the cache
// directory (the image's EMBEDD_CACHE_DIR). The collection exists before,
// with a version of another model; afterwards its alias points at a new
// version holding every id exactly once, embedded by the Job's model, and
// exactly one shard swapped it; every exit status is one the Job's
// podFailurePolicy treats as documented (0, or 1 for the shard that owns
// the bad record: FailIndex).
func TestK8sReembedJob(t *testing.T) {
	m := readK8sManifests(t)
	c := m.container
	model, _ := argValue(c.Args, "model")
	testassets.Runtime(t)
	testassets.Model(t, model)
	n := *m.job.Completions
	bin := embeddBinary(t)
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			dir := t.TempDir()
			// Each mounted volume is a local directory.
			local := map[string]string{}
			for _, vm := range c.VolumeMounts {
				local[vm.MountPath] = filepath.Join(dir, "volumes", vm.Name)
				if err := os.MkdirAll(local[vm.MountPath], 0o755); err != nil {
					t.Fatal(err)
				}
			}
			sourceArg := c.Args[len(c.Args)-1]
			_, sourceMount, _ := m.mountOf(sourceArg)
			src, texts := reembedCorpus(t, local[sourceMount], 600)
			if matches, _ := filepath.Glob(strings.Replace(sourceArg, sourceMount, local[sourceMount], 1)); !slices.Equal(matches, []string{src}) {
				t.Fatalf("SOURCE %s matches %v locally; want the corpus %s", sourceArg, matches, src)
			}
			// --data-dir: on the server stores a path no process can create
			// (under a file), as the read-only root is in the pod.
			data := filepath.Join(dir, "data")
			if be.concurrent {
				if err := os.WriteFile(filepath.Join(dir, "root-fs"), nil, 0o444); err != nil {
					t.Fatal(err)
				}
				data = filepath.Join(dir, "root-fs", "data")
			}
			coll := fmt.Sprintf("k8s_%d", time.Now().UnixNano())
			localArgs := func(in []string) []string {
				args := make([]string, 0, len(in))
				for _, a := range in {
					name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
					for mp, l := range local { // the mount paths do not nest
						if v, ok := strings.CutPrefix(a, "--"+name+"="+mp); ok && (v == "" || v[0] == '/') {
							a = "--" + name + "=" + l + v
							break
						} else if v, ok := strings.CutPrefix(a, mp); ok && (v == "" || v[0] == '/') {
							a = l + v
							break
						}
					}
					switch name {
					case "collection":
						a = "--collection=" + coll
					case "threads":
						a = "--threads=1"
					case "data-dir":
						a = "--data-dir=" + data
					}
					args = append(args, a)
				}
				return args
			}
			args := localArgs(c.Args)
			stateArg, _ := argValue(c.Args, "state-dir")
			state := local[stateArg]
			// The environment: the manifest's, the image's cache dir, no
			// EMBEDD_* of this test's own.
			localEnv := func(c k8sContainer) []string {
				env := m.env(t, c)
				env["EMBEDD_PROVIDER"] = "cpu"
				env["EMBEDD_CACHE_DIR"] = testassets.CacheDir()
				env["EMBEDD_MILVUS_ADDR"], env["EMBEDD_REDIS_ADDR"] = "", ""
				if be.concurrent {
					env["EMBEDD_MILVUS_ADDR"], _ = argValue(be.flags, "milvus-addr")
					env["EMBEDD_REDIS_ADDR"], _ = argValue(be.flags, "redis-addr")
					env["EMBEDD_REDIS_PREFIX"], _ = argValue(be.flags, "redis-prefix")
				}
				var out []string
				for _, kv := range os.Environ() {
					if k, _, _ := strings.Cut(kv, "="); (!strings.HasPrefix(k, "EMBEDD_") || k == "EMBEDD_ORT_LIB") && k != "JOB_COMPLETION_INDEX" {
						out = append(out, kv)
					}
				}
				for k, v := range env {
					out = append(out, k+"="+v)
				}
				return out
			}
			base := localEnv(c)
			// The collection exists, live on a version of another model.
			if out, err := runCLI(t, "", append([]string{"collections", "list", "--data-dir", filepath.Join(dir, "data"), "--collection", coll, "--model", oldModel}, be.flags...)...); err != nil {
				t.Fatalf("create %s: %v\n%s", coll, err, out)
			}
			t.Logf("%d pods: %s %s", n, bin, strings.Join(args, " "))
			outs, codes := make([]string, n), make([]int, n)
			var wg sync.WaitGroup
			for i := range n {
				pod := func() {
					cmd := exec.Command(bin, args...)
					cmd.Env = append(slices.Clone(base), fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i))
					cmd.Dir = dir
					b, _ := cmd.CombinedOutput()
					outs[i], codes[i] = string(b), cmd.ProcessState.ExitCode()
				}
				if be.concurrent {
					wg.Go(pod)
				} else {
					pod()
				}
			}
			wg.Wait()
			swapped, exit1 := 0, 0
			for i := range n {
				switch codes[i] {
				case 0:
				case 1:
					exit1++
					if a := m.action(1); a != "FailIndex" {
						t.Errorf("shard %d exit 1: the Job would %s", i, a)
					}
				default:
					t.Fatalf("shard %d exit %d (the Job would %s)\n%s", i, codes[i], m.action(codes[i]), outs[i])
				}
				swapped += strings.Count(outs[i], "alias "+coll+" -> ")
				if !strings.Contains(outs[i], fmt.Sprintf("shard %d/%d", i, n)) || !strings.Contains(outs[i], "msg=") {
					t.Errorf("shard %d: want its summary and log lines\n%s", i, outs[i])
				}
			}
			if exit1 != 1 || swapped != 1 {
				t.Errorf("%d shards exited 1 (want 1: the owner of the record without text), %d swapped the alias (want 1)\n%s", exit1, swapped, strings.Join(outs, "\n"))
			}
			if _, err := os.Stat(filepath.Join(state, coll, "finalized.json")); err != nil {
				t.Errorf("finalized.json: %v", err)
			}
			dead := 0
			files, _ := filepath.Glob(filepath.Join(state, coll, "dead-letter-*.jsonl"))
			for _, f := range files {
				b, _ := os.ReadFile(f)
				sc := bufio.NewScanner(bytes.NewReader(b))
				for sc.Scan() {
					dead++
					if !strings.Contains(sc.Text(), `"id":"no-text"`) {
						t.Errorf("%s: %s", f, sc.Text())
					}
				}
			}
			if dead != 1 {
				t.Errorf("%d dead letters in %v; want the record without text, once", dead, files)
			}
			if be.concurrent {
				if _, err := os.Stat(data); err == nil {
					t.Errorf("%s exists: a shard opened the embedded store", data)
				}
			}
			x := openCollection(t, filepath.Join(dir, "data"), coll, be)
			live := checkLive(t, x, coll, model, texts, !be.concurrent)
			t.Logf("live version %s (%d records)", live.Version, live.Count)
			// The finalize Job on the finished job: it only reports.
			fc := m.finalize.Template.Spec.Containers[0]
			cmd := exec.Command(bin, localArgs(fc.Args)...)
			cmd.Env, cmd.Dir = localEnv(fc), dir
			out, err := cmd.CombinedOutput()
			if want := fmt.Sprintf("finalized %s@%s: ", coll, live.Version); err != nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "swapped true") {
				t.Errorf("finalize Job: %v; want %q... swapped true\n%s", err, want, out)
			}
		})
	}
}
