package tokenize

import (
	"slices"
	"unicode"
	"unicode/utf8"
)

// Normalization and pre-tokenization both work rune by rune in tokenizers' BERT pipeline
// (gen_tables.py checks this), with one exception: NFD puts runs of combining marks into
// canonical order. Stripping accents removes almost all of them, so the order of what is
// left can only change when two marks that survive stripping meet; runes that can start
// such a run are marked kindSlow and take the exact path in slowRune.
//
// Every other rune's fate is an entry: a kind and a rune (or an index into block.multi).

type entry uint32

const (
	kindAppend  = iota // append the rune to the current word
	kindIsolate        // end the word; the rune is a word of its own (punctuation, CJK)
	kindSplit          // end the word (whitespace)
	kindDrop           // nothing (control characters, stripped accents)
	kindMulti          // several entries, stored in block.multi at the index
	kindSlow           // see slowRune

	kindShift = 24
	valueMask = 1<<kindShift - 1
)

func mkEntry(kind int, v rune) entry { return entry(kind<<kindShift | int(v)) }
func (e entry) kind() int            { return int(e >> kindShift) }
func (e entry) value() rune          { return rune(e & valueMask) }

const blockSize = 256

type block struct {
	e     [blockSize]entry
	multi [][]entry // entries of the runes whose kind is kindMulti
}

// normalizer holds BertNormalizer's options.
type normalizer struct {
	clean, chinese, strip, lower bool
}

// appendEntries appends the entries r normalizes and pre-tokenizes into, and reports
// whether r leaves a mark that NFD may reorder (only possible when stripping accents).
func (n normalizer) appendEntries(dst []entry, r rune) ([]entry, bool) {
	if n.clean {
		if unicode.Is(cleanDrop, r) {
			return dst, false
		}
		if unicode.Is(cleanSpace, r) {
			r = ' '
		}
	}
	if n.chinese && unicode.Is(chineseChars, r) {
		dst = append(dst, classify(' '))
		dst, slow := n.appendStripped(dst, r)
		return append(dst, classify(' ')), slow
	}
	return n.appendStripped(dst, r)
}

func (n normalizer) appendStripped(dst []entry, r rune) ([]entry, bool) {
	if !n.strip {
		return n.appendLower(dst, r), false
	}
	var buf [8]rune
	slow := false
	for _, d := range appendDecomposition(buf[:0], r) {
		if unicode.Is(nonSpacingMark, d) {
			continue
		}
		if combiningClass(d) != 0 {
			slow = true
		}
		dst = n.appendLower(dst, d)
	}
	return dst, slow
}

func (n normalizer) appendLower(dst []entry, r rune) []entry {
	if !n.lower {
		return append(dst, classify(r))
	}
	l, ok := lookupString(lowercase, r)
	if !ok {
		return append(dst, classify(r))
	}
	for _, x := range l {
		dst = append(dst, classify(x))
	}
	return dst
}

// classify is BertPreTokenizer's view of one normalized rune.
func classify(r rune) entry {
	switch {
	case unicode.Is(preWhitespace, r):
		return mkEntry(kindSplit, 0)
	case unicode.Is(prePunct, r):
		return mkEntry(kindIsolate, r)
	}
	return mkEntry(kindAppend, r)
}

// entryOf folds the entries computed for one rune into one, storing several in b.multi.
func entryOf(dst []entry, slow bool, b *block) entry {
	switch {
	case slow:
		return mkEntry(kindSlow, 0)
	case len(dst) == 0:
		return mkEntry(kindDrop, 0)
	case len(dst) == 1:
		return dst[0]
	}
	b.multi = append(b.multi, slices.Clone(dst))
	return mkEntry(kindMulti, rune(len(b.multi)-1))
}

// lookup returns the entry of r and the block that holds its multi entries.
func (t *Tokenizer) lookup(r rune) (entry, *block) {
	p := &t.blocks[r/blockSize]
	b := p.Load()
	if b == nil {
		b = t.fillBlock(r / blockSize)
	}
	return b.e[r%blockSize], b
}

// fillBlock computes block i. Two goroutines may both compute it; the first to store wins
// and the other's copy is garbage, which is cheaper than a lock on the hot path.
func (t *Tokenizer) fillBlock(i rune) *block {
	b := new(block)
	var tmp []entry
	for j := range b.e {
		var slow bool
		tmp, slow = t.norm.appendEntries(tmp[:0], i*blockSize+rune(j))
		b.e[j] = entryOf(tmp, slow, b)
	}
	p := &t.blocks[i]
	if p.CompareAndSwap(nil, b) {
		return b
	}
	return p.Load()
}

// Hangul syllables decompose by formula (Unicode §3.12); gen_tables.py checks tokenizers
// agrees for all of them.
const (
	hangulBase             = 0xAC00
	hangulCount            = 11172
	jamoL, jamoV, jamoT    = 0x1100, 0x1161, 0x11A7
	jamoVCount, jamoTCount = 21, 28
)

// appendDecomposition appends the NFD of r to dst.
func appendDecomposition(dst []rune, r rune) []rune {
	if s := r - hangulBase; s >= 0 && s < hangulCount {
		dst = append(dst, jamoL+s/(jamoVCount*jamoTCount), jamoV+s%(jamoVCount*jamoTCount)/jamoTCount)
		if tr := s % jamoTCount; tr != 0 {
			dst = append(dst, jamoT+tr)
		}
		return dst
	}
	d, ok := lookupString(decompositions, r)
	if !ok {
		return append(dst, r)
	}
	for _, x := range d {
		dst = append(dst, x)
	}
	return dst
}

type runeString struct {
	r rune
	s string
}

func lookupString(table []runeString, r rune) (string, bool) {
	i, ok := slices.BinarySearchFunc(table, r, func(e runeString, r rune) int { return int(e.r - r) })
	if !ok {
		return "", false
	}
	return table[i].s, true
}

type cccRange struct {
	lo, hi rune
	ccc    uint8
}

// combiningClass returns r's canonical combining class as tokenizers' NFD sees it.
func combiningClass(r rune) uint8 {
	if r < 0x300 {
		return 0
	}
	i, ok := slices.BinarySearchFunc(combiningClasses, r, func(e cccRange, r rune) int {
		switch {
		case e.hi < r:
			return -1
		case e.lo > r:
			return 1
		}
		return 0
	})
	if !ok {
		return 0
	}
	return combiningClasses[i].ccc
}

// encoder is the state of one Encode call. Encoders are pooled per Tokenizer.
type encoder struct {
	t *Tokenizer

	ids   []int32 // output: special prefix, then the first limit tokens of the text
	n     int     // tokens of the text so far, stored or not
	limit int     // how many tokens of the text to store
	out   []int32 // Encode's reusable output buffer

	word   []byte // the current word, normalized; only its first maxChars runes are kept
	nchars int    // runes in the current word, kept or not
	sub    []int32

	pend []pending // marks waiting for NFD's canonical ordering
	dbuf []rune
}

type pending struct {
	r   rune
	ccc uint8
}

func (s *encoder) emit(id int32) {
	if s.n < s.limit {
		s.ids = append(s.ids, id)
	}
	s.n++
}

// encodeSequence splits text at added tokens and encodes the pieces between them.
func (t *Tokenizer) encodeSequence(s *encoder, text string) {
	for len(text) > 0 {
		start, end, id := t.added.find(text)
		if start < 0 {
			s.segment(text)
			return
		}
		s.segment(text[:start])
		s.emit(id)
		text = text[end:]
	}
}

// segment normalizes, pre-tokenizes and WordPiece-encodes text, which holds no added token.
func (s *encoder) segment(text string) {
	t := s.t
	for i := 0; i < len(text); {
		if c := text[i]; c < utf8.RuneSelf {
			i++
			e := t.ascii[c]
			if len(s.pend) > 0 && e.kind() != kindDrop {
				// ASCII runes are all starters, but clean_text removes the dropped ones
				// before NFD sees them.
				s.flushPending()
			}
			switch e.kind() {
			case kindAppend:
				s.nchars++
				if s.nchars <= t.maxChars {
					s.word = append(s.word, byte(e.value()))
				}
			case kindSplit:
				s.endWord()
			default:
				s.apply(e)
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		i += size
		if len(s.pend) > 0 {
			s.slowRune(r)
			continue
		}
		e, b := t.lookup(r)
		switch e.kind() {
		case kindMulti:
			for _, m := range b.multi[e.value()] {
				s.apply(m)
			}
		case kindSlow:
			s.slowRune(r)
		default:
			s.apply(e)
		}
	}
	s.flushPending()
	s.endWord()
}

// apply carries out a single entry (not kindMulti or kindSlow).
func (s *encoder) apply(e entry) {
	switch e.kind() {
	case kindAppend:
		s.appendRune(e.value())
	case kindIsolate:
		s.endWord()
		s.appendRune(e.value())
		s.endWord()
	case kindSplit:
		s.endWord()
	}
}

func (s *encoder) appendRune(r rune) {
	s.nchars++
	if s.nchars <= s.t.maxChars {
		s.word = utf8.AppendRune(s.word, r)
	}
}

func (s *encoder) endWord() {
	if s.nchars == 0 {
		return
	}
	s.t.wordPiece(s, s.word, s.nchars)
	s.word, s.nchars = s.word[:0], 0
}

// slowRune is the full pipeline for one rune, with NFD's canonical ordering: marks that
// survive accent stripping wait in s.pend until the next starter.
func (s *encoder) slowRune(r rune) {
	n := s.t.norm
	if n.clean {
		if unicode.Is(cleanDrop, r) {
			return // removed before NFD runs, so it does not end a run of marks
		}
		if unicode.Is(cleanSpace, r) {
			r = ' '
		}
	}
	chinese := n.chinese && unicode.Is(chineseChars, r)
	if chinese {
		s.nfdRune(' ')
	}
	if n.strip {
		s.dbuf = appendDecomposition(s.dbuf[:0], r)
		for _, d := range s.dbuf {
			s.nfdRune(d)
		}
	} else {
		s.lowered(r)
	}
	if chinese {
		s.nfdRune(' ')
	}
}

// nfdRune takes one rune of NFD output.
func (s *encoder) nfdRune(d rune) {
	ccc := combiningClass(d)
	if ccc == 0 {
		s.flushPending()
	}
	if s.t.norm.strip && unicode.Is(nonSpacingMark, d) {
		return
	}
	if ccc == 0 {
		s.lowered(d)
		return
	}
	s.pend = append(s.pend, pending{d, ccc})
}

// flushPending emits the waiting marks in canonical order: a stable sort by class.
func (s *encoder) flushPending() {
	if len(s.pend) == 0 {
		return
	}
	slices.SortStableFunc(s.pend, func(a, b pending) int { return int(a.ccc) - int(b.ccc) })
	for _, p := range s.pend {
		s.lowered(p.r)
	}
	s.pend = s.pend[:0]
}

func (s *encoder) lowered(r rune) {
	if !s.t.norm.lower {
		s.apply(classify(r))
		return
	}
	l, ok := lookupString(lowercase, r)
	if !ok {
		s.apply(classify(r))
		return
	}
	for _, x := range l {
		s.apply(classify(x))
	}
}
