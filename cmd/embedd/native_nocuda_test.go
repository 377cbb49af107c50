//go:build !cuda

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// TestServeCUDANativeWithoutTag asks a binary built without the cuda tag
// for the native CUDA encoder, with the CPU build of ONNX Runtime: the
// server serves on the CPU and says why (native not compiled in, ONNX
// Runtime's CUDA provider missing) in GetModel and the metrics, and the
// metrics have no GPU memory series.
func TestServeCUDANativeWithoutTag(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	lib := pull.RuntimePath(testassets.CacheDir(), pull.DefaultRuntime)
	conn, metricsAddr, stop := runServeMetrics(t, testServeConfig(t, "--provider", "cuda-native", "--ort-lib", lib))
	defer stop()
	res, err := embeddv1.NewEmbeddingServiceClient(conn).GetModel(context.Background(), &embeddv1.GetModelRequest{Name: "all-minilm-l6-v2-int8"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Backend != "onnxruntime/cpu" || res.RequestedProvider != "cuda-native" ||
		!strings.Contains(res.Fallback, "native: built without the cuda build tag (make build-cuda); onnxruntime cuda: ") {
		t.Errorf("GetModel: backend %q, requested %q, fallback %q; want onnxruntime/cpu, cuda-native and both reasons", res.Backend, res.RequestedProvider, res.Fallback)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `embedd_model_backend{backend="onnxruntime/cpu",fallback="true",model="all-minilm-l6-v2-int8",requested="cuda-native"} 1`
	if !strings.Contains(string(body), want) {
		t.Errorf("metrics lack %s", want)
	}
	if strings.Contains(string(body), "embedd_gpu_memory") {
		t.Errorf("a build without the cuda tag exports GPU memory gauges")
	}
}

// TestNativeFlagsWithoutTag: --provider cuda-native is accepted by embed
// and bench (and runs, on the CPU, here); version says the native encoder
// is not compiled in; an unknown provider's usage error lists cuda-native.
func TestNativeFlagsWithoutTag(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	cache := testassets.CacheDir()
	lib := pull.RuntimePath(cache, pull.DefaultRuntime)
	out, err := runCLI(t, "", "embed", "--cache-dir", cache, "--ort-lib", lib, "--provider", "cuda-native", "--threads", "2", "--model", "all-minilm-l6-v2-int8", "hello")
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Device string }
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Device != "cpu" {
		t.Errorf("embed --provider cuda-native: device %q (%v); want cpu", res.Device, err)
	}
	texts := t.TempDir() + "/texts.jsonl"
	if err := os.WriteFile(texts, []byte(`{"text": "one"}`+"\n"+`{"text": "two words"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "", "bench", "--cache-dir", cache, "--ort-lib", lib, "--provider", "cuda-native", "--threads", "2", "--model", "all-minilm-l6-v2-int8",
		"--batch", "2", "--duration", "100ms", "--warmup", "0s", texts)
	if err != nil {
		t.Fatal(err)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench output: %v\n%s", err, out)
	}
	if rep.Requested != "cuda-native" || rep.Backend != "onnxruntime/cpu" || !strings.Contains(rep.Fallback, "cuda build tag") {
		t.Errorf("bench: requested %q backend %q fallback %q", rep.Requested, rep.Backend, rep.Fallback)
	}
	out, err = runCLI(t, "", "version", "--cache-dir", cache)
	if err != nil || !strings.Contains(out, "native cuda encoder: not compiled in (build with `make build-cuda`)") {
		t.Errorf("version: %v\n%s", err, out)
	}
	_, err = runCLI(t, "", "embed", "--cache-dir", cache, "--provider", "native", "x")
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), `"cuda-native"`) {
		t.Errorf("--provider native: %v; want a usage error listing cuda-native", err)
	}
}
