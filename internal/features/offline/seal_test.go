package offline

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/embedd/embedd/internal/seal"
	"github.com/embedd/embedd/internal/testassets"
)

func keyring(t *testing.T, ids ...string) *seal.Keyring {
	t.Helper()
	keys := map[string][]byte{}
	for _, id := range ids {
		keys[id] = bytes.Repeat([]byte(id[len(id)-1:]), seal.KeySize)
	}
	k, err := seal.New(ids[0], keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sealedIDs(t *testing.T, path string) (ids []string, values []float64) {
	t.Helper()
	rows, err := parquet.ReadFile[Row](path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		id, _ := seal.KeyID(r.Sealed)
		ids = append(ids, id)
		values = append(values, r.Value)
	}
	return ids, values
}

// TestSealedSnapshots: Sensitive rows are sealed (value 0, is_null true in
// the clear), read back with the keys, refused without them naming the key
// id; Reseal seals a plaintext snapshot written before encryption and
// moves sealed values to the current key.
func TestSealedSnapshots(t *testing.T) {
	dir := t.TempDir()
	rows := []Row{
		{EntityID: "u1", Feature: "income", Version: 1, Value: 4242.4242, Sensitive: true, TimestampMicros: 1},
		{EntityID: "u1", Feature: "clicks", Version: 1, Value: 3, TimestampMicros: 1},
	}
	plain, err := Open(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	path, err := plain.Write(rows, time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, vals := sealedIDs(t, path); vals[0] != 3 || vals[1] != 4242.4242 {
		t.Fatalf("plaintext snapshot values %v", vals)
	}
	s, err := OpenOptions(dir, Options{Keep: 5, Keys: keyring(t, "k1")})
	if err != nil {
		t.Fatal(err)
	}
	sensitive := func(f string) bool { return f == "income" }
	for _, want := range []string{"k1", "k2"} {
		if want == "k2" {
			if s, err = OpenOptions(dir, Options{Keep: 5, Keys: keyring(t, "k2", "k1")}); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.Reseal(sensitive); err != nil || n != 1 {
			t.Fatalf("Reseal to %s = %d, %v; want 1", want, n, err)
		}
		ids, vals := sealedIDs(t, path)
		if ids[0] != "" || ids[1] != want || vals[1] != 0 || vals[0] != 3 {
			t.Errorf("after Reseal to %s: key ids %q, values %v; want clicks plain, income sealed under %s", want, ids, vals, want)
		}
		if v, ok := s.Get("u1", "income", 1); !ok || v.Value != 4242.4242 || v.Null {
			t.Errorf("Get income = %+v, %v; want 4242.4242", v, ok)
		}
	}
	if n, err := s.Reseal(sensitive); err != nil || n != 0 {
		t.Errorf("Reseal when current = %d, %v; want 0", n, err)
	}
	_, err = Open(dir, 5)
	if !errors.Is(err, seal.ErrUnknownKey) || !strings.Contains(err.Error(), `key "k2"`) {
		t.Errorf("Open without keys: %v; want ErrUnknownKey naming k2", err)
	}
	_, err = OpenOptions(dir, Options{Keys: keyring(t, "k1")})
	if !errors.Is(err, seal.ErrUnknownKey) || !strings.Contains(err.Error(), `key "k2"`) {
		t.Errorf("Open with k1 only: %v; want ErrUnknownKey naming k2", err)
	}
}

// TestOpenSnapshotBeforeSealing: a snapshot written before the sealed
// column existed still loads.
func TestOpenSnapshotBeforeSealing(t *testing.T) {
	type oldRow struct {
		EntityID        string  `parquet:"entity_id"`
		Feature         string  `parquet:"feature"`
		Version         int32   `parquet:"version"`
		Value           float64 `parquet:"value"`
		Null            bool    `parquet:"is_null"`
		TimestampMicros int64   `parquet:"ts_micros"`
	}
	dir := t.TempDir()
	if err := parquet.WriteFile(dir+"/features-1.parquet", []oldRow{{EntityID: "u1", Feature: "income", Version: 1, Value: 7}}); err != nil {
		t.Fatal(err)
	}
	s, err := OpenOptions(dir, Options{Keys: keyring(t, "k1")})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Get("u1", "income", 1); !ok || v.Value != 7 {
		t.Errorf("Get = %+v, %v; want 7", v, ok)
	}
}

// TestSealedReadableByPyArrow: a snapshot with sealed values is still
// standard Parquet; pyarrow reads the sensitive value as null, with no
// trace of the value, and the others as they are.
func TestSealedReadableByPyArrow(t *testing.T) {
	py := testassets.ToolsPython(t)
	s, err := OpenOptions(t.TempDir(), Options{Keys: keyring(t, "k1")})
	if err != nil {
		t.Fatal(err)
	}
	path, err := s.Write([]Row{
		{EntityID: "u1", Feature: "income", Version: 1, Value: 4242.4242, Sensitive: true},
		{EntityID: "u1", Feature: "clicks", Version: 1, Value: 3},
	}, time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", `import sys, pyarrow.parquet as pq
for r in pq.read_table(sys.argv[1]).to_pylist(): print(r["feature"], r["value"], r["is_null"], r["sealed"] is not None)`, path).Output()
	if err != nil {
		t.Fatalf("pyarrow: %v", err)
	}
	if want := "clicks 3.0 False False\nincome 0.0 True True\n"; string(out) != want {
		t.Errorf("pyarrow read\n%s; want\n%s", out, want)
	}
}
