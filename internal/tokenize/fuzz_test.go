package tokenize

import (
	"errors"
	"slices"
	"testing"
	"unicode/utf8"
)

// FuzzEncode checks Encode's invariants on arbitrary input: it never panics, rejects
// exactly the invalid UTF-8, and returns [CLS] ... [SEP] with ids in range, at most maxLen
// of them, whose truncation is a prefix of the full encoding. Seeded from the corpus.
func FuzzEncode(f *testing.F) {
	tok := loadFixture(f)
	for i, text := range readCorpus(f) {
		f.Add(text, []int{0, 128, 3, 7}[i%4], i%2 == 0)
	}
	f.Add("hello\xffworld", 16, true)
	f.Add("\xed\xa0\x80[CLS]", 0, false)
	f.Fuzz(func(t *testing.T, text string, maxLen int, truncate bool) {
		maxLen %= 300 // keep limits small enough to truncate; negative means no limit
		got, err := tok.Encode(text, maxLen, truncate)
		switch {
		case !utf8.ValidString(text):
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("invalid UTF-8 %q: got error %v; want %v", text, err, ErrInvalidUTF8)
			}
			return
		case maxLen > 0 && maxLen < tok.NumSpecial():
			if !errors.Is(err, ErrMaxLen) {
				t.Fatalf("maxLen %d: got error %v; want %v", maxLen, err, ErrMaxLen)
			}
			return
		case err != nil && !truncate && errors.Is(err, ErrTooLong):
			if maxLen <= 0 || got.Tokens <= maxLen {
				t.Fatalf("%q: got %v with Tokens %d; want it only past maxLen %d", text, err, got.Tokens, maxLen)
			}
			return
		case err != nil:
			t.Fatalf("%q: %v", text, err)
		}
		ids := got.IDs
		if len(ids) < 2 || ids[0] != 101 || ids[len(ids)-1] != 102 {
			t.Fatalf("%q: got %v; want [CLS] ... [SEP]", text, ids)
		}
		if len(got.TypeIDs) != len(ids) {
			t.Fatalf("%q: got %d type ids; want %d", text, len(got.TypeIDs), len(ids))
		}
		for _, id := range ids {
			if id < 0 || int(id) >= tok.VocabSize() {
				t.Fatalf("%q: got id %d; want it in [0, %d)", text, id, tok.VocabSize())
			}
		}
		if maxLen > 0 && len(ids) > maxLen {
			t.Fatalf("%q: got %d ids; want at most %d", text, len(ids), maxLen)
		}
		if got.Tokens < len(ids) || (got.Tokens > len(ids) && (maxLen <= 0 || len(ids) != maxLen)) {
			t.Fatalf("%q: got Tokens %d for %d ids with maxLen %d", text, got.Tokens, len(ids), maxLen)
		}
		if got.Tokens > len(ids) {
			full, err := tok.Encode(text, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			want := append(slices.Clone(full.IDs[:len(ids)-1]), 102)
			if len(full.IDs) != got.Tokens || !slices.Equal(ids, want) {
				t.Fatalf("%q: truncated to %v; want %v (full %d tokens, Tokens %d)", text, ids, want, len(full.IDs), got.Tokens)
			}
		}
	})
}
