package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestGenerateTextsDeterministic(t *testing.T) {
	for _, set := range textSets {
		t.Run(set.Name, func(t *testing.T) {
			a := generateTexts(set, 200, 1)
			b := generateTexts(set, 200, 1)
			if !slices.Equal(a, b) {
				t.Fatal("two generations with the same seed differ")
			}
			if long := generateTexts(set, 300, 1); !slices.Equal(long[:200], a) {
				t.Error("a longer list does not extend the shorter one")
			}
			if other := generateTexts(set, 200, 2); slices.Equal(other, a) {
				t.Error("seeds 1 and 2 give the same texts")
			}
			distinct := map[string]bool{}
			for _, s := range a {
				distinct[s] = true
			}
			if len(distinct) < 190 {
				t.Errorf("got %d distinct texts of 200; want at least 190", len(distinct))
			}
		})
	}
}

func TestGenerateTextsLength(t *testing.T) {
	for _, set := range textSets {
		if len(set.Mix) > 0 {
			continue // TestGenerateMix
		}
		t.Run(set.Name, func(t *testing.T) {
			texts := generateTexts(set, 1000, 7)
			total := 0
			for i, s := range texts {
				// The estimate the generator budgets with: a token per word
				// and per period, plus [CLS] and [SEP].
				tokens := len(strings.Fields(s)) + strings.Count(s, ".") + 2
				total += tokens
				// A last sentence has at least two words and a period, so a
				// text may pass its budget by up to two tokens.
				lo, hi := set.Tokens*3/4-1, set.Tokens*5/4+2
				if tokens < lo || tokens > hi {
					t.Errorf("text %d %q: got %d tokens; want %d..%d", i, s, tokens, lo, hi)
				}
			}
			mean := float64(total) / float64(len(texts))
			if d := mean / float64(set.Tokens); d < 0.9 || d > 1.1 {
				t.Errorf("got mean %.1f tokens; want %d±10%%", mean, set.Tokens)
			}
		})
	}
}

func TestSentence(t *testing.T) {
	known := map[string]bool{"and": true}
	for _, list := range [][]string{determiners, adjectives, nouns, verbs, prepositions, adverbs} {
		for _, w := range list {
			known[w] = true
		}
	}
	rng := splitmix64(3)
	for words := 2; words <= 20; words++ {
		for range 200 {
			s := sentence(&rng, words)
			if !strings.HasSuffix(s, ".") || s[0] < 'A' || s[0] > 'Z' {
				t.Fatalf("%q: want a capital letter first and a period last", s)
			}
			fields := strings.Fields(strings.ToLower(strings.TrimSuffix(s, ".")))
			if len(fields) != words {
				t.Fatalf("%q: got %d words; want %d", s, len(fields), words)
			}
			for _, f := range fields {
				if !known[f] {
					t.Fatalf("%q: word %q is in no word list", s, f)
				}
			}
			if last := fields[len(fields)-1]; slices.Contains(determiners, last) || slices.Contains(prepositions, last) || last == "and" {
				t.Fatalf("%q: ends in a cut phrase", s)
			}
		}
	}
}

func TestWriteTexts(t *testing.T) {
	set, err := lookupTextSet("medium")
	if err != nil {
		t.Fatal(err)
	}
	texts := generateTexts(set, 5, 1)
	var buf bytes.Buffer
	if err := writeTexts(&buf, set, texts); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("got %d lines; want %d", len(lines), len(texts))
	}
	for i, line := range lines {
		var d dumpedText
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if d.Set != "medium" || d.Text != texts[i] {
			t.Errorf("line %d: got %+v; want set medium, text %q", i, d, texts[i])
		}
	}
	if _, err := lookupTextSet("huge"); err == nil {
		t.Error("lookupTextSet(huge): got no error")
	}
}

func TestSummarizeTexts(t *testing.T) {
	st := summarizeTexts([]string{"a b.", "a b c d."})
	if st.Count != 2 || st.MeanWords != 3 || st.MinWords != 2 || st.MaxWords != 4 {
		t.Errorf("got %+v; want count 2, mean 3, min 2, max 4", st)
	}
	if other := summarizeTexts([]string{"a b.", "a b c e."}); other.SHA256 == st.SHA256 {
		t.Error("different texts have the same SHA256")
	}
}

// TestGenerateMix: a mixed set's texts are its parts' texts at the same
// index, each part in roughly equal share.
func TestGenerateMix(t *testing.T) {
	set, err := lookupTextSet("mixed")
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	texts := generateTexts(set, n, 5)
	share := map[string]int{}
	parts := map[string][]string{}
	for _, name := range set.Mix {
		p, err := lookupTextSet(name)
		if err != nil {
			t.Fatal(err)
		}
		parts[name] = generateTexts(p, n, 5)
	}
	for i, s := range texts {
		from := ""
		for _, name := range set.Mix {
			if parts[name][i] == s {
				from = name
			}
		}
		if from == "" {
			t.Fatalf("text %d %q is no part's text %d", i, s, i)
		}
		share[from]++
	}
	for _, name := range set.Mix {
		if f := float64(share[name]) / n; f < 0.28 || f > 0.39 {
			t.Errorf("part %s: share %.2f; want about 1/3", name, f)
		}
	}
}

func TestZipfSchedule(t *testing.T) {
	texts := make([]string, 1000)
	for i := range texts {
		texts[i] = strconv.Itoa(i)
	}
	a := zipfSchedule(texts, 1.1, 7, 100000)
	if b := zipfSchedule(texts, 1.1, 7, 100000); !slices.Equal(a, b) {
		t.Fatal("same seed, different schedules")
	}
	counts := map[string]int{}
	for _, s := range a {
		counts[s]++
	}
	// Zipf(1.1): text 0 is drawn about 2^1.1 = 2.14 times as often as text
	// 1, and far more often than text 999; every draw is a text.
	r := float64(counts["0"]) / float64(counts["1"])
	if r < 1.9 || r > 2.4 || counts["0"] < 50*max(counts["999"], 1) || len(counts) > len(texts) {
		t.Errorf("counts: 0:%d 1:%d 999:%d distinct:%d", counts["0"], counts["1"], counts["999"], len(counts))
	}
}
