package store

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestCheckMetadata(t *testing.T) {
	tests := []struct {
		m    string
		want string // "" for valid
	}{
		{``, ""},
		{`{}`, ""},
		{" \n{\"k\":[1,{\"x\":null}]}\t", ""},
		{`null`, "not a JSON object"},
		{`[1]`, "not a JSON object"},
		{`"s"`, "not a JSON object"},
		{`{"k":}`, "not a JSON object"},
		{`{} {}`, "not a JSON object"},
		{` `, "not a JSON object"},
		{`{"k":"` + strings.Repeat("x", MaxMetaBytes) + `"}`, "limit 65536"},
	}
	for _, tc := range tests {
		err := CheckMetadata([]byte(tc.m))
		if got := errString(err); !strings.Contains(got, tc.want) || (tc.want == "") != (err == nil) {
			t.Errorf("CheckMetadata(%.20q): got %v; want %q", tc.m, err, tc.want)
		}
	}
}

// FuzzCheckMetadata checks that the scan accepts exactly what decoding into
// an object accepts.
func FuzzCheckMetadata(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `null`, `[]`, ` {"a":{"b":[true]}} `, `{"a"`, "{\"\xff\":1}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, m []byte) {
		if len(m) == 0 || len(m) > MaxMetaBytes {
			return
		}
		var obj map[string]json.RawMessage
		want := json.Unmarshal(m, &obj) == nil && obj != nil
		if got := CheckMetadata(m) == nil; got != want {
			t.Fatalf("CheckMetadata(%q) accepts: got %v; want %v", m, got, want)
		}
	})
}

func TestCheckRecords(t *testing.T) {
	rec := func(id string, v ...float32) Record { return Record{ID: id, Vector: v} }
	tests := []struct {
		name string
		recs []Record
		want string
	}{
		{"ok", []Record{rec("a", 1, 0), rec("b", 0, 1)}, ""},
		{"empty", nil, "no records"},
		{"empty id", []Record{rec("a", 1, 0), rec("", 1, 0)}, "ids[1] is empty"},
		{"long id", []Record{rec(strings.Repeat("x", 257), 1, 0)}, "ids[0] is 257 bytes; limit 256"},
		{"bad UTF-8", []Record{rec("\xff", 1, 0)}, "ids[0] is not valid UTF-8"},
		{"repeat", []Record{rec("a", 1, 0), rec("a", 0, 1)}, `ids[1] repeats ids[0] ("a")`},
		{"dims", []Record{rec("a", 1)}, `records[0] ("a") has 1 dimensions; collection has 2`},
		{"inf", []Record{rec("a", 1, float32(math.Inf(-1)))}, `records[0] ("a") value 1 is -Inf`},
		{"metadata", []Record{{ID: "a", Vector: []float32{1, 0}, Metadata: []byte(`[1]`)}}, `records[0] ("a") metadata is not a JSON object`},
	}
	for _, tc := range tests {
		err := CheckRecords(tc.recs, 2)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: got %v; want nil", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want ErrInvalid naming %q", tc.name, err, tc.want)
		}
	}
	var idErr *IDError
	if err := CheckIDs([]string{"a", ""}); !errors.As(err, &idErr) || idErr.Bytes != 0 {
		t.Errorf("CheckIDs: got %v; want an *IDError for the empty id", err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCheckVersion(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want string // "" for valid
	}{
		{"v1", ""},
		{"2024-06-01_all.minilm", ""},
		{strings.Repeat("v", MaxVersionBytes), ""},
		{"", "0 bytes"},
		{strings.Repeat("v", MaxVersionBytes+1), "65 bytes"},
		{"v/2", `byte 1 ('/')`},
		{"v 2", `byte 1 (' ')`},
		{"vé", "byte 1"},
	} {
		err := CheckVersion(tc.v)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckVersion(%q) = %v; want %q", tc.v, err, tc.want)
		}
	}
}
