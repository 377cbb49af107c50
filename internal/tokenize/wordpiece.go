package tokenize

import "strings"

// wordPiece emits the WordPiece ids of one pre-tokenized word of nchars runes: greedy
// longest match first, continuation pieces looked up with the prefix, and the whole word
// as unkID when it is longer than maxChars or some position matches no piece. This is
// tokenizers' WordPiece::tokenize, which tries ever shorter substrings; the trie finds the
// same longest match in one walk. Matches end on rune boundaries as there, because
// vocabulary entries are whole runes.
func (t *Tokenizer) wordPiece(s *encoder, word []byte, nchars int) {
	if nchars > t.maxChars {
		s.emit(t.unkID)
		return
	}
	// Most words are in the vocabulary whole, and one map probe beats a trie walk, whose
	// every step may miss the cache.
	if len(word) <= t.maxKey {
		if id, ok := t.vocab[string(word)]; ok {
			s.emit(id)
			return
		}
	}
	sub := s.sub[:0]
	for start := 0; start < len(word); {
		node := int32(0)
		if start > 0 {
			node = t.contRoot
		}
		id, n := int32(-1), 0
		if node >= 0 {
			id, n = t.trie.longest(node, word[start:])
		}
		if n == 0 {
			s.sub = sub
			s.emit(t.unkID)
			return
		}
		sub = append(sub, id)
		start += n
	}
	for _, id := range sub {
		s.emit(id)
	}
	s.sub = sub
}

// addedTokens finds added tokens (all of them matched on the raw text) the way
// tokenizers' AddedVocabulary does: leftmost match first, longest of those starting there.
type addedTokens struct {
	byFirst [256][]addedToken // tokens by their first byte, longest first
	// only is the first byte when all tokens share it (BERT's "["), else -1: then
	// strings.IndexByte finds candidates.
	only int
	any  bool
}

type addedToken struct {
	content string
	id      int32
}

func (a *addedTokens) add(content string, id int32) {
	c := content[0]
	list := append(a.byFirst[c], addedToken{content, id})
	// Keep longest first so the first prefix match is the longest.
	for i := len(list) - 1; i > 0 && len(list[i].content) > len(list[i-1].content); i-- {
		list[i], list[i-1] = list[i-1], list[i]
	}
	a.byFirst[c] = list
	switch {
	case !a.any:
		a.only = int(c)
	case a.only != int(c):
		a.only = -1
	}
	a.any = true
}

// find returns the byte span and id of the first added token in text, or start -1.
func (a *addedTokens) find(text string) (start, end int, id int32) {
	if !a.any {
		return -1, 0, 0
	}
	for i := 0; i < len(text); i++ {
		if a.only >= 0 {
			j := strings.IndexByte(text[i:], byte(a.only))
			if j < 0 {
				return -1, 0, 0
			}
			i += j
		}
		for _, tok := range a.byFirst[text[i]] {
			if strings.HasPrefix(text[i:], tok.content) {
				return i, i + len(tok.content), tok.id
			}
		}
	}
	return -1, 0, 0
}
