package tokenize

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestEncodeSmall(t *testing.T) {
	tok := loadFixture(t)
	// Expected ids are from tokenizers 0.23.3 (python: tok.encode(text).ids).
	tests := []struct {
		text     string
		maxLen   int
		truncate bool
		want     []int32
		tokens   int
	}{
		{"", 0, false, []int32{101, 102}, 2},
		{"hello world [CLS]x[cls] İstanbul ǅ", 0, false, []int32{101, 7592, 2088, 101, 1060, 1031, 18856, 2015, 1033, 9960, 100, 102}, 12},
		{"hello world foo", 2, true, []int32{101, 102}, 5},
		{"hello world foo", 3, true, []int32{101, 7592, 102}, 5},
		{"hello world foo", 5, false, []int32{101, 7592, 2088, 29379, 102}, 5},
		{"hello world foo", -1, false, []int32{101, 7592, 2088, 29379, 102}, 5},
	}
	for _, tt := range tests {
		got, err := tok.Encode(tt.text, tt.maxLen, tt.truncate)
		if err != nil {
			t.Errorf("Encode(%q, %d, %v): %v", tt.text, tt.maxLen, tt.truncate, err)
			continue
		}
		if !slices.Equal(got.IDs, tt.want) || got.Tokens != tt.tokens || len(got.TypeIDs) != len(got.IDs) {
			t.Errorf("Encode(%q, %d, %v): got %+v; want IDs %v, Tokens %d", tt.text, tt.maxLen, tt.truncate, got, tt.want, tt.tokens)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	tok := loadFixture(t)
	tests := []struct {
		name     string
		text     string
		maxLen   int
		wantErr  error
		wantMsg  []string
		wantToks int
	}{
		{"invalid first byte", "\xffabc", 0, ErrInvalidUTF8, []string{"byte offset 0"}, 0},
		{"truncated sequence", "héllo\xe2\x82", 0, ErrInvalidUTF8, []string{"byte offset 6"}, 0},
		{"encoded surrogate", "ok \xed\xa0\x80", 0, ErrInvalidUTF8, []string{"byte offset 3"}, 0},
		{"overlong encoding", "a\xc0\xafb", 0, ErrInvalidUTF8, []string{"byte offset 1"}, 0},
		{"too long", "hello world foo", 4, ErrTooLong, []string{"5 tokens", "max length 4"}, 5},
		{"too long by far", strings.Repeat("hello ", 1000), 128, ErrTooLong, []string{"1002 tokens", "max length 128"}, 1002},
		{"max length below specials", "hello", 1, ErrMaxLen, []string{"max length 1", "adds 2"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tok.Encode(tt.text, tt.maxLen, false)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error: got %v; want %v", err, tt.wantErr)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q: got no %q; want it named", err, m)
				}
			}
			if got.Tokens != tt.wantToks || got.IDs != nil {
				t.Errorf("Encoding: got %+v; want Tokens %d and no IDs", got, tt.wantToks)
			}
			enc := Encoding{IDs: []int32{1, 2, 3}, TypeIDs: []int32{0, 0, 0}}
			err = tok.EncodeInto(&enc, tt.text, tt.maxLen, false)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("EncodeInto error: got %v; want %v", err, tt.wantErr)
			}
			if len(enc.IDs) != 0 || len(enc.TypeIDs) != 0 || enc.Tokens != tt.wantToks {
				t.Errorf("EncodeInto: got %+v; want empty IDs and Tokens %d", enc, tt.wantToks)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	tok := loadFixture(t)
	if got, want := tok.VocabSize(), 30522; got != want {
		t.Errorf("VocabSize: got %d; want %d", got, want)
	}
	if got, want := tok.PadID(), int32(0); got != want {
		t.Errorf("PadID: got %d; want %d", got, want)
	}
	if got, want := tok.NumSpecial(), 2; got != want {
		t.Errorf("NumSpecial: got %d; want %d", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	unsupported := filepath.Join(dir, "bpe.json")
	if err := os.WriteFile(unsupported, fixtureWith(t, func(m map[string]any) {
		m["model"].(map[string]any)["type"] = "BPE"
	}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{missing, bad, unsupported} {
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Load(%s): got %v; want an error naming the path", path, err)
		}
	}
	if _, err := Load(unsupported); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Load(%s): got %v; want %v", unsupported, err, ErrUnsupported)
	}
}

func TestParseErrors(t *testing.T) {
	set := func(path string, v any) func(map[string]any) {
		return func(m map[string]any) {
			keys := strings.Split(path, ".")
			for _, k := range keys[:len(keys)-1] {
				m = m[k].(map[string]any)
			}
			m[keys[len(keys)-1]] = v
		}
	}
	tests := []struct {
		name    string
		edit    func(map[string]any)
		wantErr error // nil: any error
		wantMsg string
	}{
		{"normalizer type", set("normalizer", map[string]any{"type": "NFKC"}), ErrUnsupported, `normalizer type "NFKC"`},
		{"pre_tokenizer type", set("pre_tokenizer", map[string]any{"type": "Whitespace"}), ErrUnsupported, `pre_tokenizer type "Whitespace"`},
		{"no pre_tokenizer", set("pre_tokenizer", nil), ErrUnsupported, `pre_tokenizer type ""`},
		{"model type", set("model.type", "Unigram"), ErrUnsupported, `model type "Unigram"`},
		{"post_processor type", set("post_processor", map[string]any{"type": "RobertaProcessing"}), ErrUnsupported, `post_processor type "RobertaProcessing"`},
		{"normalized added token", func(m map[string]any) {
			m["added_tokens"].([]any)[0].(map[string]any)["normalized"] = true
		}, ErrUnsupported, `"[PAD]" has normalized: true`},
		{"lstrip added token", func(m map[string]any) {
			m["added_tokens"].([]any)[4].(map[string]any)["lstrip"] = true
		}, ErrUnsupported, `"[MASK]" sets single_word, lstrip or rstrip`},
		{"unk not in vocab", set("model.unk_token", "<unk>"), nil, `unk_token "<unk>" is not in the vocab`},
		{"empty vocab", set("model.vocab", map[string]any{}), nil, "empty vocab"},
		{"negative id", set("model.vocab.hello", -5), nil, `"hello" has negative id -5`},
		{"template without sequence", set("post_processor.single", []any{}), ErrUnsupported, "has no sequence"},
		{"template special unknown", set("post_processor.special_tokens", map[string]any{}), nil, `special token "[CLS]" is not in special_tokens`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(fixtureWith(t, tt.edit))
			if err == nil {
				t.Fatalf("got no error; want one containing %q", tt.wantMsg)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v; want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got %q; want it to contain %q", err, tt.wantMsg)
			}
		})
	}
	if _, err := Parse([]byte("[]")); err == nil || !strings.Contains(err.Error(), "tokenize: parse tokenizer.json") {
		t.Errorf("Parse([]): got %v; want a parse error", err)
	}
}

func TestParseOptions(t *testing.T) {
	// BertProcessing, a padding section and a null normalizer are all accepted.
	tok := parseWith(t, func(m map[string]any) {
		m["post_processor"] = json.RawMessage(`{"type":"BertProcessing","sep":["[SEP]",102],"cls":["[CLS]",101]}`)
		m["padding"] = map[string]any{"pad_id": 7}
		m["normalizer"] = nil
	})
	got, err := tok.Encode("Hello world", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	// Without a normalizer "Hello" keeps its capital and is not in the uncased vocabulary.
	if want := []int32{101, 100, 2088, 102}; !slices.Equal(got.IDs, want) {
		t.Errorf("ids: got %v; want %v", got.IDs, want)
	}
	if got, want := tok.PadID(), int32(7); got != want {
		t.Errorf("PadID: got %d; want %d", got, want)
	}
	// No post-processor: no special tokens.
	tok = parseWith(t, func(m map[string]any) { m["post_processor"] = nil })
	got, err = tok.Encode("hello world", 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{7592}; !slices.Equal(got.IDs, want) || got.Tokens != 2 {
		t.Errorf("got %+v; want IDs %v and Tokens 2", got, want)
	}
}

func TestEncodeIntoReuses(t *testing.T) {
	tok := loadFixture(t)
	enc := Encoding{IDs: make([]int32, 0, 64), TypeIDs: make([]int32, 0, 64)}
	ids, types := &enc.IDs[:1][0], &enc.TypeIDs[:1][0]
	if err := tok.EncodeInto(&enc, "hello world", 0, false); err != nil {
		t.Fatal(err)
	}
	if &enc.IDs[0] != ids || &enc.TypeIDs[0] != types {
		t.Errorf("EncodeInto: got new slices; want the caller's reused")
	}
	if want := []int32{101, 7592, 2088, 102}; !slices.Equal(enc.IDs, want) {
		t.Errorf("ids: got %v; want %v", enc.IDs, want)
	}
}

// TestTablesASCII checks what segment's ASCII path assumes of the generated tables.
func TestTablesASCII(t *testing.T) {
	for r := rune(0); r < 0x80; r++ {
		if c := combiningClass(r); c != 0 {
			t.Errorf("combiningClass(%q): got %d; want 0", r, c)
		}
		if d := appendDecomposition(nil, r); !slices.Equal(d, []rune{r}) {
			t.Errorf("decomposition of %q: got %q; want itself", r, d)
		}
	}
}
