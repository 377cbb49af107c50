package offline

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/testassets"
)

func rows(n int, v float64) []Row {
	var out []Row
	for i := range n {
		out = append(out,
			Row{EntityID: fmt.Sprintf("u%d", i), Feature: "amount_sum_5m", Version: 1, Value: v + float64(i), TimestampMicros: 1_700_000_000_000_000},
			Row{EntityID: fmt.Sprintf("u%d", i), Feature: "amount_stddev_5m", Version: 2, Null: true, TimestampMicros: 1_700_000_000_000_000},
		)
	}
	return out
}

func TestWriteReadReload(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get("u1", "amount_sum_5m", 1); ok || s.Loaded() != "" {
		t.Fatal("empty store has a value")
	}
	at := time.Unix(1_700_000_100, 0)
	if _, err := s.Write(rows(3, 10), at); err != nil {
		t.Fatal(err)
	}
	v, ok := s.Get("u1", "amount_sum_5m", 1)
	if !ok || v.Value != 11 || v.Null || v.Version != 1 || v.Timestamp.UnixMicro() != 1_700_000_000_000_000 {
		t.Fatalf("u1: %+v %v", v, ok)
	}
	if v, ok := s.Get("u2", "amount_stddev_5m", 2); !ok || !v.Null {
		t.Fatalf("null: %+v %v", v, ok)
	}
	if _, ok := s.Get("u1", "amount_sum_5m", 2); ok {
		t.Fatal("unknown version found")
	}
	// Two more snapshots: keep=2 deletes the first; a new Store opens the newest.
	for k := 1; k <= 2; k++ {
		if _, err := s.Write(rows(3, float64(100*k)), at.Add(time.Duration(k)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "features-*.parquet"))
	if len(files) != 2 {
		t.Fatalf("%d snapshots kept; want 2", len(files))
	}
	s2, err := Open(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s2.Get("u0", "amount_sum_5m", 1); v.Value != 200 {
		t.Fatalf("newest snapshot not loaded: %+v", v)
	}
}

func TestCorruptSnapshotKeepsPrevious(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(rows(2, 1), time.Unix(100, 0)); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "features-999999999999.parquet")
	os.WriteFile(bad, []byte("not parquet"), 0o600)
	if err := s.Reload(); err == nil {
		t.Fatal("corrupt snapshot loaded")
	}
	if v, ok := s.Get("u1", "amount_sum_5m", 1); !ok || v.Value != 2 {
		t.Fatalf("previous index lost: %+v", v)
	}
}

// TestReadableByPyArrow checks the files are standard Parquet: pyarrow (the
// tooling venv of scripts/pyenv.sh) reads the same rows. `make test` sets
// EMBEDD_TOOLS_PYTHON; without it the test fails under EMBEDD_REQUIRE_ASSETS.
func TestReadableByPyArrow(t *testing.T) {
	py := testassets.ToolsPython(t)
	dir := t.TempDir()
	s, _ := Open(dir, 1)
	path, err := s.Write(rows(2, 5), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", `import sys, json, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]); print(json.dumps({"cols": t.column_names, "rows": t.to_pylist()}))`, path).Output()
	if err != nil {
		t.Fatalf("pyarrow: %v", err)
	}
	var got struct {
		Cols []string
		Rows []map[string]any
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Cols) != "[entity_id feature version value is_null ts_micros sealed]" || len(got.Rows) != 4 {
		t.Fatalf("pyarrow read %s", out)
	}
	if r := got.Rows[0]; r["entity_id"] != "u0" || r["feature"] != "amount_stddev_5m" || r["is_null"] != true {
		t.Fatalf("first row %v", r)
	}
	if r := got.Rows[1]; r["value"] != 5.0 || r["version"] != 1.0 {
		t.Fatalf("second row %v", r)
	}
}
