package tokenize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
)

// The fixture and the files tools/tokenize regenerates from it.
const (
	fixturePath    = "testdata/minilm-tokenizer.json"
	corpusPath     = "testdata/corpus.jsonl"
	goldenPath     = "testdata/golden.jsonl"
	variantsPath   = "testdata/golden_variants.jsonl"
	extraVocabPath = "testdata/extra_vocab.json"
)

// golden is one line of golden.jsonl: what Hugging Face tokenizers produced.
type golden struct {
	IDs     []int32 `json:"ids"`
	TypeIDs []int32 `json:"type_ids"`
	IDs128  []int32 `json:"ids128"`
	IDs256  []int32 `json:"ids256"`
}

// readJSONL decodes each line of a JSON Lines file. It splits on '\n' only: corpus texts
// are JSON-escaped but may hold U+2028 and U+0085 raw.
func readJSONL[T any](tb testing.TB, path string) []T {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var out []T
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(line, &v); err != nil {
			tb.Fatalf("%s:%d: %v", path, i+1, err)
		}
		out = append(out, v)
	}
	return out
}

func readCorpus(tb testing.TB) []string { return readCorpusFile(tb, corpusPath) }

func readCorpusFile(tb testing.TB, path string) []string {
	tb.Helper()
	lines := readJSONL[struct {
		Text string `json:"text"`
	}](tb, path)
	texts := make([]string, len(lines))
	for i, l := range lines {
		texts[i] = l.Text
	}
	return texts
}

var (
	fixtureOnce sync.Once
	fixture     *Tokenizer
	fixtureErr  error
)

// loadFixture returns the tokenizer of testdata/minilm-tokenizer.json, shared by the tests
// of this package (it is safe for concurrent use).
func loadFixture(tb testing.TB) *Tokenizer {
	tb.Helper()
	fixtureOnce.Do(func() { fixture, fixtureErr = Load(fixturePath) })
	if fixtureErr != nil {
		tb.Fatal(fixtureErr)
	}
	return fixture
}

// truncatedTypes returns the type ids of the first n ids of an encoding whose full type ids
// are full: the template's, as golden.py checks.
func truncatedTypes(full []int32, n int) []int32 {
	return append(slices.Clone(full[:n-1]), full[len(full)-1])
}

func TestParity(t *testing.T) {
	texts := readCorpus(t)
	if len(texts) < 2000 {
		t.Fatalf("corpus has %d lines; want at least 2000", len(texts))
	}
	testParity(t, texts, goldenPath)
}

// testParity compares the fixture's encodings of texts with the golden file at path.
func testParity(t *testing.T, texts []string, path string) {
	tok := loadFixture(t)
	want := readJSONL[golden](t, path)
	if len(texts) != len(want) {
		t.Fatalf("corpus has %d lines, golden %d: regenerate with tools/tokenize/golden.py", len(texts), len(want))
	}
	tests := []struct {
		name   string
		maxLen int
		want   func(g golden) []int32
	}{
		{"full", 0, func(g golden) []int32 { return g.IDs }},
		{"max128", 128, func(g golden) []int32 { return g.IDs128 }},
		{"max256", 256, func(g golden) []int32 { return g.IDs256 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mismatches := 0
			var reused Encoding
			for i, text := range texts {
				wantIDs := tt.want(want[i])
				got, err := tok.Encode(text, tt.maxLen, true)
				if err != nil {
					t.Fatalf("line %d %q: %v", i+1, text, err)
				}
				if err := tok.EncodeInto(&reused, text, tt.maxLen, true); err != nil {
					t.Fatalf("line %d %q: EncodeInto: %v", i+1, text, err)
				}
				wantTypes := truncatedTypes(want[i].TypeIDs, len(wantIDs))
				bad := false
				if !slices.Equal(got.IDs, wantIDs) {
					bad = true
					if mismatches < 10 {
						t.Errorf("line %d %q: ids: got %v; want %v", i+1, text, got.IDs, wantIDs)
					}
				}
				if !slices.Equal(got.TypeIDs, wantTypes) {
					bad = true
					if mismatches < 10 {
						t.Errorf("line %d: type ids: got %v; want %v", i+1, got.TypeIDs, wantTypes)
					}
				}
				if got.Tokens != len(want[i].IDs) {
					bad = true
					if mismatches < 10 {
						t.Errorf("line %d: Tokens: got %d; want %d", i+1, got.Tokens, len(want[i].IDs))
					}
				}
				if !slices.Equal(reused.IDs, got.IDs) || !slices.Equal(reused.TypeIDs, got.TypeIDs) || reused.Tokens != got.Tokens {
					bad = true
					if mismatches < 10 {
						t.Errorf("line %d: EncodeInto: got %+v; want %+v", i+1, reused, got)
					}
				}
				if bad {
					mismatches++
				}
			}
			t.Logf("%d lines, %d mismatching", len(texts), mismatches)
			if mismatches != 0 {
				t.Errorf("mismatching lines: got %d; want 0", mismatches)
			}
		})
	}
}

// TestParityVariants checks the BertNormalizer options the fixture does not use, with the
// vocabulary extended so that no normalized character hides behind [UNK], against
// golden_variants.jsonl. The variants must match VARIANTS in tools/tokenize/golden.py.
func TestParityVariants(t *testing.T) {
	testParityVariants(t, readCorpus(t), variantsPath, extraVocabPath)
}

func testParityVariants(t *testing.T, texts []string, goldenPath, extraPath string) {
	variants := map[string]string{
		"uncased":            `{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true}`,
		"cased":              `{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":false}`,
		"strip-only":         `{"type":"BertNormalizer","clean_text":false,"handle_chinese_chars":false,"strip_accents":true,"lowercase":false}`,
		"lower-keep-accents": `{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":false,"strip_accents":false,"lowercase":true}`,
	}
	rows := readJSONL[struct {
		Variant string  `json:"variant"`
		Line    int     `json:"line"`
		IDs     []int32 `json:"ids"`
	}](t, goldenPath)
	data, err := os.ReadFile(extraPath)
	if err != nil {
		t.Fatal(err)
	}
	var extra []string
	if err := json.Unmarshal(data, &extra); err != nil {
		t.Fatal(err)
	}
	toks := make(map[string]*Tokenizer)
	for name, norm := range variants {
		toks[name] = parseWith(t, func(m map[string]any) {
			m["normalizer"] = json.RawMessage(norm)
			vocab := m["model"].(map[string]any)["vocab"].(map[string]any)
			next := len(vocab) // the fixture's ids are 0..len-1
			for i, tok := range extra {
				vocab[tok] = next + i
			}
		})
	}
	mismatches := make(map[string]int)
	counts := make(map[string]int)
	for _, r := range rows {
		tok, ok := toks[r.Variant]
		if !ok {
			t.Fatalf("golden variant %q unknown to this test", r.Variant)
		}
		counts[r.Variant]++
		got, err := tok.Encode(texts[r.Line], 0, false)
		if err != nil {
			t.Fatalf("%s line %d: %v", r.Variant, r.Line+1, err)
		}
		if !slices.Equal(got.IDs, r.IDs) {
			if mismatches[r.Variant] < 5 {
				t.Errorf("%s line %d %q: got %v; want %v", r.Variant, r.Line+1, texts[r.Line], got.IDs, r.IDs)
			}
			mismatches[r.Variant]++
		}
	}
	for name := range variants {
		t.Logf("%s: %d lines, %d mismatching", name, counts[name], mismatches[name])
		if counts[name] == 0 {
			t.Errorf("%s: no golden lines", name)
		}
		if mismatches[name] != 0 {
			t.Errorf("%s: mismatching lines: got %d; want 0", name, mismatches[name])
		}
	}
}

// parseWith parses the fixture after edit changes its decoded JSON.
func parseWith(tb testing.TB, edit func(map[string]any)) *Tokenizer {
	tb.Helper()
	tok, err := Parse(fixtureWith(tb, edit))
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

func fixtureWith(tb testing.TB, edit func(map[string]any)) []byte {
	tb.Helper()
	data, err := os.ReadFile(fixturePath)
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		tb.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestConcurrentEncode encodes the corpus from several goroutines at once; under -race it
// checks the lazily filled rune cache and the encoder pool.
func TestConcurrentEncode(t *testing.T) {
	// A fresh tokenizer, so that the goroutines race to fill its cache.
	tok, err := Load(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	texts := readCorpus(t)
	want := readJSONL[golden](t, goldenPath)
	const workers = 4
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(texts); i += 1 + w {
				got, err := tok.Encode(texts[i], 128, true)
				if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(got.IDs, want[i].IDs128) {
					errs <- fmt.Errorf("line %d: got %v; want %v", i+1, got.IDs, want[i].IDs128)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
