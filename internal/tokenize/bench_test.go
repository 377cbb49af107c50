package tokenize

import (
	"sync/atomic"
	"testing"
)

// BenchmarkEncode encodes the parity corpus, one text per op, and reports tokens/s (ids
// returned, special tokens included) for comparison with
// bench/tokenize/hf_tokenizers_bench.py, which measures Hugging Face tokenizers the same
// way. Sub-benchmarks: the corpus ("all", or "english": its printable-ASCII lines), the
// limit ("full": none; "max128": truncate at 128 like the fixture's model), and the calling
// style ("single": Encode in one goroutine; "single-into": EncodeInto reusing one
// Encoding; "parallel": Encode from GOMAXPROCS goroutines).
func BenchmarkEncode(b *testing.B) {
	tok := loadFixture(b)
	all := readCorpus(b)
	var english []string
	for _, text := range all {
		if isPrintableASCII(text) {
			english = append(english, text)
		}
	}
	// Warm up outside the timer: fill the rune cache and the encoder pool.
	for _, text := range all {
		if _, err := tok.Encode(text, 0, false); err != nil {
			b.Fatal(err)
		}
	}
	for _, corpus := range []struct {
		name  string
		texts []string
	}{{"all", all}, {"english", english}} {
		texts := corpus.texts
		for _, limit := range []struct {
			name   string
			maxLen int
		}{{"full", 0}, {"max128", 128}} {
			prefix := corpus.name + "/" + limit.name
			b.Run(prefix+"/single", func(b *testing.B) {
				b.ReportAllocs()
				tokens, i := 0, 0
				for b.Loop() {
					enc, err := tok.Encode(texts[i%len(texts)], limit.maxLen, true)
					if err != nil {
						b.Fatal(err)
					}
					tokens += len(enc.IDs)
					i++
				}
				b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
			})
			b.Run(prefix+"/single-into", func(b *testing.B) {
				b.ReportAllocs()
				var enc Encoding
				tokens, i := 0, 0
				for b.Loop() {
					if err := tok.EncodeInto(&enc, texts[i%len(texts)], limit.maxLen, true); err != nil {
						b.Fatal(err)
					}
					tokens += len(enc.IDs)
					i++
				}
				b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
			})
			b.Run(prefix+"/parallel", func(b *testing.B) {
				b.ReportAllocs()
				var tokens, next atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					n := 0
					for pb.Next() {
						i := int(next.Add(1)) % len(texts)
						enc, err := tok.Encode(texts[i], limit.maxLen, true)
						if err != nil {
							b.Error(err)
							return
						}
						n += len(enc.IDs)
					}
					tokens.Add(int64(n))
				})
				b.ReportMetric(float64(tokens.Load())/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}

// BenchmarkLoad measures parsing the fixture's tokenizer.json.
func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(fixturePath); err != nil {
			b.Fatal(err)
		}
	}
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
