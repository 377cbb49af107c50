package tokenize

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The parts of tokenizer.json this package reads. Fields it does not know are ignored;
// fields that would change the ids and that it does not implement are rejected.
type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	Model         json.RawMessage  `json:"model"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Padding       *struct {
		PadID *int32 `json:"pad_id"`
	} `json:"padding"`
}

type addedTokenJSON struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
}

type typeJSON struct {
	Type string `json:"type"`
}

// bertNormalizerJSON has tokenizers' defaults where a field is absent.
type bertNormalizerJSON struct {
	CleanText          *bool `json:"clean_text"`
	HandleChineseChars *bool `json:"handle_chinese_chars"`
	StripAccents       *bool `json:"strip_accents"` // null: follow lowercase
	Lowercase          *bool `json:"lowercase"`
}

type wordPieceJSON struct {
	UnkToken      *string          `json:"unk_token"`
	Prefix        *string          `json:"continuing_subword_prefix"`
	MaxInputChars *int             `json:"max_input_chars_per_word"`
	Vocab         map[string]int32 `json:"vocab"`
}

type templateJSON struct {
	Single        []templatePieceJSON         `json:"single"`
	SpecialTokens map[string]specialTokenJSON `json:"special_tokens"`
}

type templatePieceJSON struct {
	SpecialToken *struct {
		ID     string `json:"id"`
		TypeID int32  `json:"type_id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID     string `json:"id"`
		TypeID int32  `json:"type_id"`
	} `json:"Sequence"`
}

type specialTokenJSON struct {
	IDs []int32 `json:"ids"`
}

type bertProcessingJSON struct {
	Sep [2]json.RawMessage `json:"sep"`
	Cls [2]json.RawMessage `json:"cls"`
}

// Parse builds a Tokenizer from the contents of a tokenizer.json. Errors for components
// it does not implement wrap ErrUnsupported.
func Parse(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenize: parse tokenizer.json: %w", err)
	}
	t := &Tokenizer{}
	if err := t.parseNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if typ, err := componentType(f.PreTokenizer); err != nil {
		return nil, fmt.Errorf("tokenize: pre_tokenizer: %w", err)
	} else if typ != "BertPreTokenizer" {
		return nil, fmt.Errorf("%w: pre_tokenizer type %q (want BertPreTokenizer)", ErrUnsupported, typ)
	}
	if err := t.parseModel(f.Model); err != nil {
		return nil, err
	}
	if err := t.parseAdded(f.AddedTokens); err != nil {
		return nil, err
	}
	if err := t.parsePostProcessor(f.PostProcessor); err != nil {
		return nil, err
	}
	t.padID = 0
	if id, ok := t.vocab["[PAD]"]; ok {
		t.padID = id
	}
	if f.Padding != nil && f.Padding.PadID != nil {
		t.padID = *f.Padding.PadID
	}
	if err := t.checkIDs(); err != nil {
		return nil, err
	}
	b := t.fillBlock(0)
	copy(t.ascii[:], b.e[:len(t.ascii)])
	for c, e := range t.ascii {
		if k := e.kind(); k == kindMulti || k == kindSlow {
			// The tables make this impossible; segment's ASCII path relies on it.
			return nil, fmt.Errorf("tokenize: internal error: ASCII %q normalizes to several runes", rune(c))
		}
	}
	return t, nil
}

// componentType returns the "type" of a component, or "" when it is null or absent.
func componentType(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var tj typeJSON
	if err := json.Unmarshal(raw, &tj); err != nil {
		return "", err
	}
	return tj.Type, nil
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

func (t *Tokenizer) parseNormalizer(raw json.RawMessage) error {
	typ, err := componentType(raw)
	if err != nil {
		return fmt.Errorf("tokenize: normalizer: %w", err)
	}
	switch typ {
	case "":
		return nil // no normalization
	case "BertNormalizer":
	default:
		return fmt.Errorf("%w: normalizer type %q (want BertNormalizer or null)", ErrUnsupported, typ)
	}
	var n bertNormalizerJSON
	if err := json.Unmarshal(raw, &n); err != nil {
		return fmt.Errorf("tokenize: normalizer: %w", err)
	}
	flag := func(p *bool, def bool) bool {
		if p == nil {
			return def
		}
		return *p
	}
	t.norm.clean = flag(n.CleanText, true)
	t.norm.chinese = flag(n.HandleChineseChars, true)
	t.norm.lower = flag(n.Lowercase, true)
	t.norm.strip = flag(n.StripAccents, t.norm.lower)
	return nil
}

func (t *Tokenizer) parseModel(raw json.RawMessage) error {
	typ, err := componentType(raw)
	if err != nil {
		return fmt.Errorf("tokenize: model: %w", err)
	}
	if typ != "WordPiece" {
		return fmt.Errorf("%w: model type %q (want WordPiece)", ErrUnsupported, typ)
	}
	var m wordPieceJSON
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("tokenize: model: %w", err)
	}
	unk, prefix, maxChars := "[UNK]", "##", 100 // tokenizers' defaults
	if m.UnkToken != nil {
		unk = *m.UnkToken
	}
	if m.Prefix != nil {
		prefix = *m.Prefix
	}
	if m.MaxInputChars != nil {
		maxChars = *m.MaxInputChars
	}
	if len(m.Vocab) == 0 {
		return fmt.Errorf("tokenize: model: empty vocab")
	}
	id, ok := m.Vocab[unk]
	if !ok {
		return fmt.Errorf("tokenize: model: unk_token %q is not in the vocab", unk)
	}
	t.vocab, t.unkID, t.maxChars = m.Vocab, id, maxChars
	for tok := range m.Vocab {
		t.maxKey = max(t.maxKey, len(tok))
	}
	t.trie = newTrie(m.Vocab)
	t.contRoot = t.trie.walk(0, prefix)
	return nil
}

func (t *Tokenizer) parseAdded(tokens []addedTokenJSON) error {
	for i, a := range tokens {
		switch {
		case a.Content == "":
			return fmt.Errorf("tokenize: added_tokens[%d]: empty content", i)
		case a.Normalized:
			return fmt.Errorf("%w: added token %q has normalized: true", ErrUnsupported, a.Content)
		case a.SingleWord || a.LStrip || a.RStrip:
			return fmt.Errorf("%w: added token %q sets single_word, lstrip or rstrip", ErrUnsupported, a.Content)
		}
		t.added.add(a.Content, a.ID)
	}
	return nil
}

func (t *Tokenizer) parsePostProcessor(raw json.RawMessage) error {
	typ, err := componentType(raw)
	if err != nil {
		return fmt.Errorf("tokenize: post_processor: %w", err)
	}
	switch typ {
	case "":
		return nil // no special tokens
	case "BertProcessing":
		var p bertProcessingJSON
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("tokenize: post_processor: %w", err)
		}
		var cls, sep int32
		if err := json.Unmarshal(p.Cls[1], &cls); err != nil {
			return fmt.Errorf("tokenize: post_processor: cls: %w", err)
		}
		if err := json.Unmarshal(p.Sep[1], &sep); err != nil {
			return fmt.Errorf("tokenize: post_processor: sep: %w", err)
		}
		t.prefix, t.suffix = []int32{cls}, []int32{sep}
		t.prefixType, t.suffixType = []int32{0}, []int32{0}
		return nil
	case "TemplateProcessing":
	default:
		return fmt.Errorf("%w: post_processor type %q (want TemplateProcessing, BertProcessing or null)", ErrUnsupported, typ)
	}
	var p templateJSON
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("tokenize: post_processor: %w", err)
	}
	seen := false
	for _, piece := range p.Single {
		switch {
		case piece.Sequence != nil:
			if seen || piece.Sequence.ID != "A" {
				return fmt.Errorf("%w: post_processor single template must hold sequence A once", ErrUnsupported)
			}
			seen, t.seqType = true, piece.Sequence.TypeID
		case piece.SpecialToken != nil:
			st, ok := p.SpecialTokens[piece.SpecialToken.ID]
			if !ok {
				return fmt.Errorf("tokenize: post_processor: special token %q is not in special_tokens", piece.SpecialToken.ID)
			}
			for _, id := range st.IDs {
				if seen {
					t.suffix, t.suffixType = append(t.suffix, id), append(t.suffixType, piece.SpecialToken.TypeID)
				} else {
					t.prefix, t.prefixType = append(t.prefix, id), append(t.prefixType, piece.SpecialToken.TypeID)
				}
			}
		default:
			return fmt.Errorf("%w: post_processor template piece is neither SpecialToken nor Sequence", ErrUnsupported)
		}
	}
	if !seen {
		return fmt.Errorf("%w: post_processor single template has no sequence", ErrUnsupported)
	}
	return nil
}

// checkIDs rejects negative ids and sets vocabSize from the largest id.
func (t *Tokenizer) checkIDs() error {
	hi := int32(-1)
	for tok, id := range t.vocab {
		if id < 0 {
			return fmt.Errorf("tokenize: model: vocab token %q has negative id %d", tok, id)
		}
		hi = max(hi, id)
	}
	for _, list := range t.added.byFirst {
		for _, a := range list {
			if a.id < 0 {
				return fmt.Errorf("tokenize: added token %q has negative id %d", a.content, a.id)
			}
			hi = max(hi, a.id)
		}
	}
	for _, id := range append(append([]int32(nil), t.prefix...), t.suffix...) {
		if id < 0 {
			return fmt.Errorf("tokenize: post_processor: special token has negative id %d", id)
		}
		hi = max(hi, id)
	}
	t.vocabSize = int(hi) + 1
	return nil
}
