package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
)

// A textSet names a family of generated texts and their target length.
type textSet struct {
	Name string
	// Tokens is the target length in WordPiece tokens of a BERT-style
	// tokenizer, [CLS] and [SEP] included; each text lands within ±25%
	// (and at most two tokens more: a last sentence has two words at least).
	// For a mixed set it is the mean of its parts' targets.
	Tokens int
	// Mix, when set, names the sets this one draws its texts from, in equal
	// shares: text i is text i of a part chosen at random (a fixed sequence
	// per seed), so the lengths of a batch vary as in real traffic.
	Mix []string
}

// textSets are the sets -texts selects from.
var textSets = []textSet{
	{Name: "short", Tokens: 8},
	{Name: "medium", Tokens: 40},
	{Name: "long", Tokens: 200},
	// The GPU device check's sets (bench/gpu): ~16, ~64 and ~256 tokens.
	// long256 texts land at 192-320 tokens and are truncated to the model's
	// 256 by the server (-truncate).
	{Name: "short16", Tokens: 16},
	{Name: "medium64", Tokens: 64},
	{Name: "long256", Tokens: 256},
	// Equal shares of short16, medium64 and long256 (the native CUDA
	// encoder packs texts without padding; this is the set it is for).
	{Name: "mixed", Tokens: 112, Mix: []string{"short16", "medium64", "long256"}},
}

func lookupTextSet(name string) (textSet, error) {
	for _, s := range textSets {
		if s.Name == name {
			return s, nil
		}
	}
	names := make([]string, len(textSets))
	for i, s := range textSets {
		names[i] = s.Name
	}
	return textSet{}, fmt.Errorf("unknown text set %q (want one of %s)", name, strings.Join(names, ", "))
}

// Word lists of common English words, each one WordPiece token in the
// uncased BERT vocabulary, so a text's token count is close to its word
// count plus punctuation. Changing them changes every generated text: the
// Go load generator and the Python baseline share texts through -dump-texts,
// never by regenerating them.
var (
	determiners = []string{"the", "a", "this", "that", "every", "one", "our", "their", "each", "some"}
	adjectives  = []string{
		"small", "large", "old", "new", "quiet", "bright", "dark", "quick", "slow", "green",
		"red", "blue", "warm", "cold", "heavy", "light", "strong", "simple", "early", "late",
		"young", "clear", "busy", "open", "empty", "full", "long", "short", "happy", "careful",
	}
	nouns = []string{
		"city", "river", "teacher", "window", "garden", "student", "engine", "letter", "market", "forest",
		"doctor", "village", "road", "house", "child", "company", "system", "story", "table", "bridge",
		"mountain", "school", "friend", "car", "train", "team", "song", "book", "field", "water",
		"computer", "report", "family", "island", "farmer", "question", "answer", "office", "music", "morning",
		"player", "station", "door", "plan", "picture", "airport", "kitchen", "camera", "museum", "ship",
	}
	verbs = []string{
		"found", "saw", "built", "opened", "carried", "followed", "watched", "changed", "moved", "left",
		"kept", "brought", "made", "took", "held", "read", "wrote", "heard", "met", "visited",
		"closed", "reached", "crossed", "painted", "cleaned", "checked", "started", "finished", "showed", "sold",
	}
	prepositions = []string{"in", "near", "behind", "under", "over", "with", "without", "after", "before", "across", "through", "from", "into", "beside"}
	adverbs      = []string{"quickly", "slowly", "again", "today", "yesterday", "quietly", "carefully", "often", "finally", "soon"}
)

// splitmix64 is a tiny PRNG with a fixed, documented output sequence, so the
// generated texts never depend on the Go version.
type splitmix64 uint64

func (s *splitmix64) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a number in [0, n); the modulo bias is below 2^-50 for the
// small n used here.
func (s *splitmix64) intn(n int) int { return int(s.next() % uint64(n)) }

// between returns a number in [lo, hi].
func (s *splitmix64) between(lo, hi int) int { return lo + s.intn(hi-lo+1) }

func (s *splitmix64) pick(words []string) string { return words[s.intn(len(words))] }

// generateTexts returns n English-like texts of the set, the same for the
// same (set, n, seed) on every machine; a longer list extends a shorter one.
func generateTexts(set textSet, n int, seed uint64) []string {
	if len(set.Mix) > 0 {
		return generateMix(set, n, seed)
	}
	rng := splitmix64(seed ^ uint64(set.Tokens)*0x2545f4914f6cdd1d)
	texts := make([]string, n)
	for i := range texts {
		texts[i] = generateText(&rng, set.Tokens)
	}
	return texts
}

// generateMix returns n texts of a mixed set: text i is text i of one of
// its parts, chosen with its own random sequence.
func generateMix(set textSet, n int, seed uint64) []string {
	parts := make([][]string, len(set.Mix))
	for i, name := range set.Mix {
		part, err := lookupTextSet(name)
		if err != nil || len(part.Mix) > 0 {
			panic(fmt.Sprintf("text set %s: part %q must be a plain text set", set.Name, name))
		}
		parts[i] = generateTexts(part, n, seed)
	}
	rng := splitmix64(seed ^ 0x6d69786564)
	texts := make([]string, n)
	for i := range texts {
		texts[i] = parts[rng.intn(len(parts))][i]
	}
	return texts
}

// generateText writes sentences until the token budget is spent: each word
// and each punctuation mark is one token, and [CLS] and [SEP] take two.
func generateText(rng *splitmix64, target int) string {
	budget := max(target*rng.between(75, 125)/100-2, 3)
	var b strings.Builder
	for budget > 0 {
		var words int
		if budget <= 16 {
			words = max(budget-1, 2) // the last sentence fills the budget
		} else {
			words = rng.between(8, 15)
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(sentence(rng, words))
		budget -= words + 1
	}
	return b.String()
}

// sentence returns a capitalized sentence of exactly words words, ending
// with a period: a subject, a verb, an object, then prepositional phrases,
// an occasional "and <verb>" and a final adverb where one word is left.
// Phrases are sized so that they fit; none is cut short.
func sentence(rng *splitmix64, words int) string {
	out := make([]string, 0, words)
	nounPhrase := func(n int) { // n is 2 or 3
		out = append(out, rng.pick(determiners))
		if n == 3 {
			out = append(out, rng.pick(adjectives))
		}
		out = append(out, rng.pick(nouns))
	}
	// fit picks a phrase length of lo or lo+1 that fits in room and does not
	// leave exactly two words, which only "and <verb>" could fill.
	fit := func(room, lo int) int {
		n := lo + rng.intn(2)
		if n > room || room-n == 2 {
			n = 2*lo + 1 - n // the other choice
		}
		return min(n, room)
	}
	if words < 3 {
		nounPhrase(words)
	} else {
		nounPhrase(fit(words-1, 2))
		out = append(out, rng.pick(verbs))
	}
	for object := false; len(out) < words; {
		switch room := words - len(out); {
		case room == 1:
			out = append(out, rng.pick(adverbs))
		case !object:
			nounPhrase(fit(room, 2))
			object = true
		case room == 2 || room > 4 && rng.intn(6) == 0:
			out = append(out, "and", rng.pick(verbs))
		default:
			out = append(out, rng.pick(prepositions))
			nounPhrase(fit(room, 3) - 1)
		}
	}
	out[0] = strings.ToUpper(out[0][:1]) + out[0][1:]
	return strings.Join(out, " ") + "."
}

// dumpedText is one line of a -dump-texts file (JSON Lines), the format
// bench/baseline/ort_inprocess.py reads.
type dumpedText struct {
	Set  string `json:"set"`
	Text string `json:"text"`
}

func writeTexts(w io.Writer, set textSet, texts []string) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, t := range texts {
		if err := enc.Encode(dumpedText{Set: set.Name, Text: t}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// textStats summarizes generated texts for the report.
type textStats struct {
	Count     int     `json:"count"`
	MeanWords float64 `json:"mean_words"`
	MinWords  int     `json:"min_words"`
	MaxWords  int     `json:"max_words"`
	// SHA256 identifies the texts (each followed by a newline), so that
	// reports measured on different texts are told apart.
	SHA256 string `json:"sha256"`
}

func summarizeTexts(texts []string) textStats {
	if len(texts) == 0 {
		return textStats{}
	}
	counts := make([]int, len(texts))
	total := 0
	h := sha256.New()
	for i, t := range texts {
		counts[i] = len(strings.Fields(t))
		total += counts[i]
		io.WriteString(h, t+"\n")
	}
	return textStats{
		Count:     len(texts),
		MeanWords: float64(total) / float64(len(texts)),
		MinWords:  slices.Min(counts),
		MaxWords:  slices.Max(counts),
		SHA256:    hex.EncodeToString(h.Sum(nil)),
	}
}

// zipfScheduleLen is the length of a Zipf request schedule: far more
// requests than one run sends on a CPU, so a run never wraps around it.
const zipfScheduleLen = 1 << 20

// zipfSchedule returns n texts drawn from texts by a Zipf law with
// exponent s > 1: texts[k] with probability proportional to 1/(k+1)^s. The
// draws are the same for the same seed; requests then take the schedule's
// texts in turn, so concurrent clients together follow the law.
func zipfSchedule(texts []string, s float64, seed uint64, n int) []string {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, 0x5a17)), s, 1, uint64(len(texts)-1))
	out := make([]string, n)
	for i := range out {
		out[i] = texts[z.Uint64()]
	}
	return out
}
