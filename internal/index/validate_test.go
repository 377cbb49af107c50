package index

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/embedd/embedd/internal/store"
)

func TestLimitsDefaults(t *testing.T) {
	if got, want := DefaultOptions().Limits, DefaultLimits(); got != want {
		t.Errorf("DefaultOptions().Limits: got %+v; want %+v", got, want)
	}
	if got, want := (Limits{}).withDefaults(), DefaultLimits(); got != want {
		t.Errorf("zero Limits: got %+v; want %+v", got, want)
	}
	got := Limits{MaxItems: 10, MaxFeatures: -1, MaxOversample: 2}.withDefaults()
	if got.MaxItems != 10 || got.MaxFeatures != DefaultLimits().MaxFeatures || got.DefaultOversample != 2 {
		t.Errorf("withDefaults: got %+v; want MaxItems 10, MaxFeatures default, DefaultOversample capped at 2", got)
	}
}

func TestValidateItems(t *testing.T) {
	c := &Collection{Name: "docs", Dims: 3}
	l := Limits{MaxItems: 4, MaxFeatures: 1}.withDefaults()
	v := []float32{1, 0, 0}
	tests := []struct {
		name  string
		items []Item
		want  []string // substrings of the error, in order of the items
	}{
		{"ok", []Item{{ID: "a", Text: "t"}, {ID: "b", Vector: v, Metadata: []byte(` {"k":1}`)}}, nil},
		{"no items", nil, []string{"no items"}},
		{"too many", make([]Item, 5), []string{"5 items; limit 4"}},
		{"each bad item named", []Item{
			{ID: "", Text: "t"},
			{ID: strings.Repeat("x", store.MaxIDBytes+1), Text: "t"},
			{ID: "\xff", Text: "t"},
			{ID: "nan", Vector: []float32{1, float32(math.NaN()), 0}},
		}, []string{
			"items[0]: id is 0 bytes; limit 1 to 256",
			"items[1]: id is 257 bytes; limit 1 to 256",
			"items[2]: id is not valid UTF-8",
			`items[3] ("nan"): vector value 1 is NaN`,
		}},
		{"repeats, metadata, features", []Item{
			{ID: "a", Text: "t"},
			{ID: "a", Text: "t"},
			{ID: "m", Text: "t", Metadata: []byte(`null`)},
			{ID: "f", Text: "t", Features: map[string]float64{"x": 1, "y": 2}},
		}, []string{
			`items[1] ("a"): id repeats items[0]`,
			`items[2] ("m"): metadata is not a JSON object`,
			`items[3] ("f"): 2 features; limit 1`,
		}},
	}
	for _, tc := range tests {
		err := l.validateItems(c, tc.items)
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%s: got %v; want nil", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: got %v; want index.ErrInvalid only", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: got %q; want it to name %q", tc.name, err, w)
			}
		}
	}
}

func TestCheckIDsAndQuery(t *testing.T) {
	l := Limits{MaxItems: 2, MaxFilterBytes: 8}.withDefaults()
	c := &Collection{Name: "docs", Dims: 2}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no ids", l.checkIDs(nil), "no ids"},
		{"too many ids", l.checkIDs([]string{"a", "b", "c"}), "3 ids; limit 2"},
		{"empty id", l.checkIDs([]string{"a", ""}), "ids[1] is empty"},
		{"long query id", l.checkQuery(c, false, Query{ID: strings.Repeat("i", 300), TopK: 1}), "ids[0] is 300 bytes; limit 256"},
		{"top_k", l.checkQuery(c, false, Query{Text: "x", TopK: store.MaxTopK + 1}), "top_k 1025 out of range [1, 1024]"},
		{"filter", l.checkQuery(c, false, Query{Text: "x", TopK: 1, Filter: "123456789"}), "filter is 9 bytes; limit 8"},
		{"oversample", l.checkQuery(c, false, Query{Text: "x", TopK: 1, Oversample: 17}), "oversample 17 out of range [0, 16]"},
		{"zero vector", l.checkQuery(c, false, Query{Vector: []float32{0, 0}, TopK: 1}), "query vector is all zeros"},
		{"features on a plain collection", l.checkQuery(c, false, Query{Text: "x", TopK: 1, Features: map[string]float64{"a": 1}}), "only used on hybrid collections"},
	}
	for _, tc := range tests {
		if !errors.Is(tc.err, ErrInvalid) || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: got %v; want index.ErrInvalid naming %q", tc.name, tc.err, tc.want)
		}
	}
	if err := l.checkQuery(c, true, Query{Vector: []float32{0, 0}, TopK: 1, Features: map[string]float64{"a": 1}}); err != nil {
		t.Errorf("hybrid query: got %v; want nil", err)
	}
}
