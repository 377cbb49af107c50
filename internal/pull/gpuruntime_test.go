package pull

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeGPURuntime is a wheel shaped like onnxruntime-gpu's, with its pin.
func fakeGPURuntime(t *testing.T) (WheelRuntime, []byte, map[string][]byte) {
	libs := map[string][]byte{
		"libonnxruntime.so.1":                []byte("core library"),
		"libonnxruntime_providers_shared.so": []byte("shared provider"),
		"libonnxruntime_providers_cuda.so":   bytes.Repeat([]byte("cuda provider "), 100),
	}
	members := map[string]string{
		"libonnxruntime.so.1":                "onnxruntime/capi/libonnxruntime.so.1.30.0",
		"libonnxruntime_providers_shared.so": "onnxruntime/capi/libonnxruntime_providers_shared.so",
		"libonnxruntime_providers_cuda.so":   "onnxruntime/capi/libonnxruntime_providers_cuda.so",
	}
	files := map[string][]byte{"onnxruntime/__init__.py": []byte("# not extracted")}
	rt := WheelRuntime{Package: "onnxruntime-gpu", Version: "0.0.1", CUDA: "13"}
	for _, name := range []string{"libonnxruntime.so.1", "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"} {
		files[members[name]] = libs[name]
		rt.Libs = append(rt.Libs, WheelLib{Member: members[name], Name: name, SHA256: sum(libs[name]), Size: int64(len(libs[name]))})
	}
	wheel := zipOf(t, files)
	rt.WheelSHA256, rt.WheelSize = sum(wheel), int64(len(wheel))
	return rt, wheel, libs
}

func TestPullGPURuntime(t *testing.T) {
	rt, wheel, libs := fakeGPURuntime(t)
	srv, counts := server(t, map[string][]byte{"/ort.whl": wheel})
	rt.WheelURL = srv.URL + "/ort.whl"
	dir := t.TempDir()
	p := New(Options{Dir: dir, HTTPClient: srv.Client(), Logger: quiet()})
	ctx := context.Background()

	core, err := p.pullWheelRuntime(ctx, rt)
	if err != nil {
		t.Fatal(err)
	}
	libDir := filepath.Join(dir, "lib", "onnxruntime-gpu-0.0.1-cuda13")
	if want := filepath.Join(libDir, "libonnxruntime.so.1"); core != want {
		t.Errorf("core library = %s; want %s", core, want)
	}
	for name, data := range libs {
		got, err := os.ReadFile(filepath.Join(libDir, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s = %q, %v; want %q", name, got, err, data)
		}
	}
	if entries, _ := os.ReadDir(libDir); len(entries) != len(libs) {
		t.Errorf("%s holds %d entries; want only the %d libraries", libDir, len(entries), len(libs))
	}
	if err := verifyWheelRuntime(dir, rt); err != nil {
		t.Errorf("verify after pull: %v", err)
	}

	// A second pull downloads nothing; a lost library comes back from the
	// cached wheel, still without a download.
	if _, err := p.pullWheelRuntime(ctx, rt); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(libDir, "libonnxruntime_providers_cuda.so"))
	err = verifyWheelRuntime(dir, rt)
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "libonnxruntime_providers_cuda.so") || !strings.Contains(err.Error(), "embedd runtime pull --gpu") {
		t.Errorf("got %v; want ErrMissing naming libonnxruntime_providers_cuda.so and `embedd runtime pull --gpu`", err)
	}
	if _, err := p.pullWheelRuntime(ctx, rt); err != nil {
		t.Fatal(err)
	}
	if n := counts["/ort.whl"].Load(); n != 1 {
		t.Errorf("wheel downloaded %d times; want 1", n)
	}

	// A corrupt library is named with its expected hash.
	shared := filepath.Join(libDir, "libonnxruntime_providers_shared.so")
	os.WriteFile(shared, []byte("corrupt"), 0o644)
	err = verifyWheelRuntime(dir, rt)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), shared) || !strings.Contains(err.Error(), rt.Libs[1].SHA256) {
		t.Errorf("got %v; want ErrChecksum naming %s and %s", err, shared, rt.Libs[1].SHA256)
	}
	if _, err := p.pullWheelRuntime(ctx, rt); err != nil {
		t.Fatalf("repair pull: %v", err)
	}
	if err := verifyWheelRuntime(dir, rt); err != nil {
		t.Errorf("verify after repair: %v", err)
	}
}

func TestPullGPURuntimeRejectsWrongBytes(t *testing.T) {
	rt, wheel, _ := fakeGPURuntime(t)
	srv, _ := server(t, map[string][]byte{
		"/ort.whl":   wheel,
		"/other.whl": zipOf(t, map[string][]byte{"x": []byte("an impostor")}),
		"/big.whl":   append(append([]byte{}, wheel...), 0),
	})
	tests := []struct {
		name string
		edit func(*WheelRuntime)
		want error
		msg  string
	}{
		{"wheel hash", func(rt *WheelRuntime) { rt.WheelURL = srv.URL + "/other.whl"; rt.WheelSize = 1 << 20 }, ErrChecksum, "downloads"},
		{"wheel size", func(rt *WheelRuntime) { rt.WheelURL = srv.URL + "/big.whl" }, nil, "more than the"},
		{"member hash", func(rt *WheelRuntime) { rt.Libs[0].SHA256 = sum([]byte("something else")) }, ErrChecksum, "libonnxruntime.so.1"},
		{"member size", func(rt *WheelRuntime) { rt.Libs[2].Size-- }, nil, "more than the"},
		{"no member", func(rt *WheelRuntime) { rt.Libs[1].Member = "onnxruntime/capi/missing.so" }, os.ErrNotExist, "missing.so"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := rt
			rt.Libs = append([]WheelLib(nil), rt.Libs...)
			rt.WheelURL = srv.URL + "/ort.whl"
			tc.edit(&rt)
			dir := t.TempDir()
			p := New(Options{Dir: dir, HTTPClient: srv.Client(), Logger: quiet()})
			_, err := p.pullWheelRuntime(context.Background(), rt)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v; want an error (%v) containing %q", err, tc.want, tc.msg)
			}
			if err := verifyWheelRuntime(dir, rt); err == nil {
				t.Error("runtime verifies after a failed pull")
			}
			// Nothing unverified is left behind: no temporary files, and
			// the core library is not in place without its providers.
			var left []string
			filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".tmp") || d.Name() == "libonnxruntime.so.1") {
					left = append(left, path)
				}
				return nil
			})
			if len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

func TestGPURuntimePin(t *testing.T) {
	if GPURuntime.Version != DefaultRuntime.Version {
		t.Errorf("GPU runtime is ORT %s; CPU runtime is %s: want one version", GPURuntime.Version, DefaultRuntime.Version)
	}
	if got, want := GPURuntimePath("/c"), "/c/lib/onnxruntime-gpu-1.30.0-cuda13/libonnxruntime.so.1"; got != want {
		t.Errorf("GPURuntimePath = %s; want %s", got, want)
	}
	if got := filepath.Dir(GPURuntimePath("/c")); got != GPURuntimeDir("/c") {
		t.Errorf("core library in %s; want it in GPURuntimeDir %s with the providers", got, GPURuntimeDir("/c"))
	}
	// ONNX Runtime looks for its providers under these names beside the core
	// library, which is installed under its SONAME.
	var names []string
	for _, l := range GPURuntime.Libs {
		names = append(names, l.Name)
	}
	if want := []string{"libonnxruntime.so.1", "libonnxruntime_providers_shared.so", cudaProvider}; !reflect.DeepEqual(names, want) {
		t.Errorf("installed names %q; want %q", names, want)
	}
	err := VerifyGPURuntime(t.TempDir())
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "embedd runtime pull --gpu") {
		t.Errorf("empty cache: got %v; want ErrMissing with the pull command", err)
	}
}

func TestReadLdSoConf(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "conf.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "ld.so.conf"), []byte("# comment\n/opt/a\ninclude conf.d/*.conf\n  \nhwcap 0 nosegneg\n/opt/self\ninclude ld.so.conf\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "conf.d", "1-cuda.conf"), []byte("/usr/local/cuda-13.0/targets/x86_64-linux/lib # trailing\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "conf.d", "2-old.conf"), []byte("/opt/b=libc6, /opt/c\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "conf.d", "3-skip.txt"), []byte("/opt/never\n"), 0o644)
	got, err := loaderDirs("/env/a::/env/b", filepath.Join(dir, "ld.so.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/env/a", "/env/b"}; !reflect.DeepEqual(got.env, want) {
		t.Errorf("env = %q; want %q", got.env, want)
	}
	// The self-include recurses until the depth bound; only the head matters.
	head := []string{"/opt/a", "/usr/local/cuda-13.0/targets/x86_64-linux/lib", "/opt/b", "/opt/c", "/opt/self", "/opt/a"}
	if len(got.system) < len(head) || !reflect.DeepEqual(got.system[:len(head)], head) {
		t.Errorf("system = %q; want it to start with %q", got.system, head)
	}
	if tail := got.system[len(got.system)-len(defaultLibDirs):]; !reflect.DeepEqual(tail, defaultLibDirs) {
		t.Errorf("system ends with %q; want the default dirs %q", tail, defaultLibDirs)
	}
	if got, err := loaderDirs("", filepath.Join(dir, "absent.conf")); err != nil || !reflect.DeepEqual(got.system, defaultLibDirs) {
		t.Errorf("missing conf: got %q, %v; want the default dirs", got.system, err)
	}
}

// TestMissingLibs builds a provider-like shared object with gcc that needs
// libfoo.so.1 (RUNPATH $ORIGIN) and checks where the search finds it.
func TestMissingLibs(t *testing.T) {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatal("gcc not found; it is needed to build embedd (cgo) and this test")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "empty.c")
	os.WriteFile(src, []byte("int embedd_test_symbol;\n"), 0o644)
	stub, rt, env, other := filepath.Join(dir, "stub"), filepath.Join(dir, "rt"), filepath.Join(dir, "env"), filepath.Join(dir, "other")
	for _, d := range []string{stub, rt, env, other} {
		os.Mkdir(d, 0o755)
	}
	gcc := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	foo := filepath.Join(stub, "libfoo.so")
	gcc("-shared", "-fPIC", "-o", foo, "-Wl,-soname,libfoo.so.1", src)
	prov := filepath.Join(rt, cudaProvider)
	gcc("-shared", "-fPIC", "-o", prov, src, "-Wl,--no-as-needed", "-L"+stub, "-lfoo", "-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags")

	sys, err := loaderDirs("", "/etc/ld.so.conf")
	if err != nil {
		t.Fatal(err)
	}
	check := func(dirs searchDirs, want []string) {
		t.Helper()
		got, err := missingLibs(prov, []string{"libbar.so.2"}, dirs)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("missing = %q; want %q", got, want)
		}
	}
	check(sys, []string{"libfoo.so.1", "libbar.so.2"})
	// Beside the provider: found through RUNPATH $ORIGIN.
	copyFile(t, foo, filepath.Join(rt, "libfoo.so.1"))
	check(sys, []string{"libbar.so.2"})
	// A file that is not an ELF object is passed over, as ld.so does; the
	// real one later on the path is found.
	os.WriteFile(filepath.Join(other, "libbar.so.2"), []byte("not elf"), 0o644)
	copyFile(t, foo, filepath.Join(env, "libbar.so.2"))
	check(searchDirs{env: []string{other}, system: sys.system}, []string{"libbar.so.2"})
	check(searchDirs{env: []string{other, env}, system: sys.system}, nil)

	if _, err := missingLibs(filepath.Join(dir, "absent", cudaProvider), nil, sys); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "embedd runtime pull --gpu") {
		t.Errorf("no provider: got %v; want ErrMissing with the pull command", err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
