package packed

import (
	"fmt"
	"math"

	"github.com/embedd/embedd/internal/accel"
)

// Batch is a packed batch: the real tokens of all texts side by side, no
// padding. Row b's tokens are IDs[Start[b]:Start[b+1]], with Types and Pos
// alike; Pos[t] is the token's 0-based position in its text. Start has one
// more element than there are texts, Start[0] = 0 and the last is the token
// count T. MaxLen is the longest text, in tokens.
type Batch struct {
	IDs, Types, Pos, Start []int32
	MaxLen                 int
}

// Texts is the number of texts, B.
func (b *Batch) Texts() int { return max(len(b.Start)-1, 0) }

// Tokens is the number of tokens, T.
func (b *Batch) Tokens() int { return len(b.IDs) }

// Len is the number of tokens of text i.
func (b *Batch) Len(i int) int { return int(b.Start[i+1] - b.Start[i]) }

// Pack packs the padded batch b into dst, reusing dst's slices. Each row's
// tokens are the leading run of 1s of its mask (right padding); a nil
// b.TypeIDs gives type 0 to every token. It fails, wrapping ErrBadBatch and
// naming the row and position, on a shape b's slices do not hold, a mask
// value other than 0 or 1, a row without tokens, a 1 after a 0 in a row's
// mask (left or gap padding), a text of more than maxPos tokens (a position
// >= maxPos), or a negative or out-of-int32 id or type id at a real token.
// Ids are checked against the model's tables by Validate. On error dst's
// contents are unspecified.
func Pack(dst *Batch, b accel.Batch, maxPos int) error {
	n := b.Size * b.SeqLen
	switch {
	case b.Size < 1 || b.SeqLen < 1:
		return fmt.Errorf("%w: shape [%d, %d]; want at least one row and one column", ErrBadBatch, b.Size, b.SeqLen)
	case len(b.IDs) < n || len(b.Mask) < n:
		return fmt.Errorf("%w: shape [%d, %d] needs %d ids and mask values; have %d and %d",
			ErrBadBatch, b.Size, b.SeqLen, n, len(b.IDs), len(b.Mask))
	case b.TypeIDs != nil && len(b.TypeIDs) < n:
		return fmt.Errorf("%w: shape [%d, %d] needs %d type ids; have %d", ErrBadBatch, b.Size, b.SeqLen, n, len(b.TypeIDs))
	case maxPos < 1:
		return fmt.Errorf("%w: maxPos %d; want >= 1", ErrBadBatch, maxPos)
	}
	dst.Start = grow(dst.Start, b.Size+1)
	dst.Start[0] = 0
	total, longest := 0, 0
	for r := range b.Size {
		mask := b.Mask[r*b.SeqLen : (r+1)*b.SeqLen]
		size := -1 // the row's length, once a 0 has been seen
		for j, m := range mask {
			switch {
			case m != 0 && m != 1:
				return fmt.Errorf("%w: row %d: mask value %d at position %d; want 0 or 1", ErrBadBatch, r, m, j)
			case m == 0 && size < 0:
				size = j
			case m == 1 && size >= 0:
				return fmt.Errorf("%w: row %d: mask has a 0 before a 1 at position %d (only right padding is supported)", ErrBadBatch, r, j)
			}
		}
		if size < 0 {
			size = b.SeqLen
		}
		switch {
		case size == 0:
			return fmt.Errorf("%w: row %d: no tokens (its mask starts with 0)", ErrBadBatch, r)
		case size > maxPos:
			return fmt.Errorf("%w: row %d: %d tokens; the model has %d positions (position %d is out of range)",
				ErrBadBatch, r, size, maxPos, maxPos)
		}
		total += size
		longest = max(longest, size)
		if total > math.MaxInt32 {
			return fmt.Errorf("%w: more than %d tokens", ErrBadBatch, math.MaxInt32)
		}
		dst.Start[r+1] = int32(total)
	}
	dst.IDs, dst.Types, dst.Pos = grow(dst.IDs, total), grow(dst.Types, total), grow(dst.Pos, total)
	dst.MaxLen = longest
	for r := range b.Size {
		s := int(dst.Start[r])
		for j := range int(dst.Start[r+1]) - s {
			id := b.IDs[r*b.SeqLen+j]
			if id < 0 || id > math.MaxInt32 {
				return fmt.Errorf("%w: row %d position %d: token id %d out of range", ErrBadBatch, r, j, id)
			}
			var typ int64
			if b.TypeIDs != nil {
				typ = b.TypeIDs[r*b.SeqLen+j]
			}
			if typ < 0 || typ > math.MaxInt32 {
				return fmt.Errorf("%w: row %d position %d: type id %d out of range", ErrBadBatch, r, j, typ)
			}
			dst.IDs[s+j], dst.Types[s+j], dst.Pos[s+j] = int32(id), int32(typ), int32(j)
		}
	}
	return nil
}

// Validate reports whether b is a well-formed packed batch for a model of
// config c: Start begins at 0, grows strictly (no empty text) and ends at
// the token count, which IDs, Types and Pos all have; Pos[t] is t's position
// in its text, below max_position_embeddings; MaxLen is the longest text;
// every id is below vocab_size and every type below type_vocab_size. Errors
// wrap ErrBadBatch and name the row and position.
func (b *Batch) Validate(c Config) error {
	t := len(b.IDs)
	switch {
	case len(b.Start) < 2:
		return fmt.Errorf("%w: Start has %d elements; want at least 2 (one text)", ErrBadBatch, len(b.Start))
	case len(b.Types) != t || len(b.Pos) != t:
		return fmt.Errorf("%w: %d ids, %d types and %d positions; want as many of each", ErrBadBatch, t, len(b.Types), len(b.Pos))
	case b.Start[0] != 0:
		return fmt.Errorf("%w: Start[0] = %d; want 0", ErrBadBatch, b.Start[0])
	case int(b.Start[len(b.Start)-1]) != t:
		return fmt.Errorf("%w: Start[%d] = %d; want the token count %d", ErrBadBatch, len(b.Start)-1, b.Start[len(b.Start)-1], t)
	}
	longest := 0
	for r := range b.Texts() {
		s, e := int(b.Start[r]), int(b.Start[r+1])
		if e <= s {
			return fmt.Errorf("%w: row %d: Start[%d] = %d, Start[%d] = %d; want at least one token", ErrBadBatch, r, r, s, r+1, e)
		}
		if e-s > c.MaxPositionEmbeddings {
			return fmt.Errorf("%w: row %d: %d tokens; the model has %d positions (position %d is out of range)",
				ErrBadBatch, r, e-s, c.MaxPositionEmbeddings, c.MaxPositionEmbeddings)
		}
		longest = max(longest, e-s)
		for i := s; i < e; i++ {
			j := i - s
			switch {
			case int(b.Pos[i]) != j:
				return fmt.Errorf("%w: row %d position %d: Pos[%d] = %d; want %d", ErrBadBatch, r, j, i, b.Pos[i], j)
			case b.IDs[i] < 0 || int(b.IDs[i]) >= c.VocabSize:
				return fmt.Errorf("%w: row %d position %d: token id %d; want 0..%d (vocab_size %d)",
					ErrBadBatch, r, j, b.IDs[i], c.VocabSize-1, c.VocabSize)
			case b.Types[i] < 0 || int(b.Types[i]) >= c.TypeVocabSize:
				return fmt.Errorf("%w: row %d position %d: type id %d; want 0..%d (type_vocab_size %d)",
					ErrBadBatch, r, j, b.Types[i], c.TypeVocabSize-1, c.TypeVocabSize)
			}
		}
	}
	if b.MaxLen != longest {
		return fmt.Errorf("%w: MaxLen %d; the longest text has %d tokens", ErrBadBatch, b.MaxLen, longest)
	}
	return nil
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
