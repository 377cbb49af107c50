package packed_test

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/accel/packed"
)

func TestPack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		b     accel.Batch
		start []int32
		ids   []int32
		types []int32
		pos   []int32
	}{
		{
			name:  "right padding",
			b:     accel.Batch{Size: 3, SeqLen: 4, IDs: []int64{1, 2, 3, 0, 4, 0, 0, 0, 5, 6, 7, 8}, Mask: []int64{1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1}, TypeIDs: []int64{0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1}},
			start: []int32{0, 3, 4, 8},
			ids:   []int32{1, 2, 3, 4, 5, 6, 7, 8},
			types: []int32{0, 1, 1, 1, 0, 0, 1, 1},
			pos:   []int32{0, 1, 2, 0, 0, 1, 2, 3},
		},
		{
			name:  "nil types",
			b:     accel.Batch{Size: 2, SeqLen: 2, IDs: []int64{9, 8, 7, 0}, Mask: []int64{1, 1, 1, 0}},
			start: []int32{0, 2, 3},
			ids:   []int32{9, 8, 7},
			types: []int32{0, 0, 0},
			pos:   []int32{0, 1, 0},
		},
		{
			name:  "one token",
			b:     accel.Batch{Size: 1, SeqLen: 1, IDs: []int64{49}, Mask: []int64{1}, TypeIDs: []int64{0}},
			start: []int32{0, 1},
			ids:   []int32{49},
			types: []int32{0},
			pos:   []int32{0},
		},
		{
			name:  "longer slices than the shape",
			b:     accel.Batch{Size: 1, SeqLen: 2, IDs: []int64{5, 6, 99}, Mask: []int64{1, 1, 1}, TypeIDs: []int64{0, 0, 1}},
			start: []int32{0, 2},
			ids:   []int32{5, 6},
			types: []int32{0, 0},
			pos:   []int32{0, 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Reuse a batch that held more: Pack must reslice, not append.
			dst := mustPack(t, padded(randTexts(tinyConfig(), 1, 9, 9, 9, 9)), 128)
			if err := packed.Pack(dst, tc.b, 16); err != nil {
				t.Fatal(err)
			}
			maxLen := 0
			for i := range len(tc.start) - 1 {
				maxLen = max(maxLen, int(tc.start[i+1]-tc.start[i]))
			}
			if !slices.Equal(dst.Start, tc.start) || !slices.Equal(dst.IDs, tc.ids) || !slices.Equal(dst.Types, tc.types) ||
				!slices.Equal(dst.Pos, tc.pos) || dst.MaxLen != maxLen {
				t.Errorf("Pack = start %v ids %v types %v pos %v maxLen %d\nwant  start %v ids %v types %v pos %v maxLen %d",
					dst.Start, dst.IDs, dst.Types, dst.Pos, dst.MaxLen, tc.start, tc.ids, tc.types, tc.pos, maxLen)
			}
			if dst.Texts() != tc.b.Size || dst.Tokens() != len(tc.ids) {
				t.Errorf("Texts, Tokens = %d, %d; want %d, %d", dst.Texts(), dst.Tokens(), tc.b.Size, len(tc.ids))
			}
			if err := dst.Validate(tinyConfig()); err != nil {
				t.Errorf("Validate of a packed batch: %v", err)
			}
		})
	}
}

// TestPackLongAndShort packs one long text among short ones: offsets and
// positions follow each text, whatever the padding.
func TestPackLongAndShort(t *testing.T) {
	c := tinyConfig()
	lengths := []int{2, 1, 120, 3, 1}
	texts := randTexts(c, 5, lengths...)
	b := mustPack(t, padded(texts), c.MaxPositionEmbeddings)
	if b.MaxLen != 120 || b.Tokens() != 127 || b.Texts() != 5 {
		t.Fatalf("MaxLen %d, Tokens %d, Texts %d; want 120, 127, 5", b.MaxLen, b.Tokens(), b.Texts())
	}
	for r, tx := range texts {
		if b.Len(r) != lengths[r] {
			t.Errorf("text %d: length %d; want %d", r, b.Len(r), lengths[r])
		}
		for j := range tx.ids {
			i := int(b.Start[r]) + j
			if int64(b.IDs[i]) != tx.ids[j] || int64(b.Types[i]) != tx.types[j] || int(b.Pos[i]) != j {
				t.Fatalf("text %d token %d: id %d type %d pos %d; want %d %d %d", r, j, b.IDs[i], b.Types[i], b.Pos[i], tx.ids[j], tx.types[j], j)
			}
		}
	}
}

func TestPackErrors(t *testing.T) {
	ok := func() accel.Batch {
		return accel.Batch{Size: 2, SeqLen: 3, IDs: []int64{1, 2, 3, 4, 5, 0}, Mask: []int64{1, 1, 1, 1, 1, 0}, TypeIDs: []int64{0, 0, 0, 0, 0, 0}}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*accel.Batch)
		maxPos int
		want   string
	}{
		{"zero rows", func(b *accel.Batch) { b.Size = 0 }, 8, "shape [0, 3]"},
		{"zero columns", func(b *accel.Batch) { b.SeqLen = 0 }, 8, "shape [2, 0]"},
		{"short ids", func(b *accel.Batch) { b.IDs = b.IDs[:5] }, 8, "needs 6 ids and mask values; have 5 and 6"},
		{"short mask", func(b *accel.Batch) { b.Mask = b.Mask[:4] }, 8, "have 6 and 4"},
		{"short types", func(b *accel.Batch) { b.TypeIDs = b.TypeIDs[:1] }, 8, "needs 6 type ids; have 1"},
		{"empty row", func(b *accel.Batch) { b.Mask[3], b.Mask[4] = 0, 0 }, 8, "row 1: no tokens"},
		{"left padding", func(b *accel.Batch) { b.Mask[3], b.Mask[5] = 0, 1 }, 8, "row 1: mask has a 0 before a 1 at position 1"},
		{"gap", func(b *accel.Batch) { b.Mask[1] = 0 }, 8, "row 0: mask has a 0 before a 1 at position 2"},
		{"mask value", func(b *accel.Batch) { b.Mask[4] = 2 }, 8, "row 1: mask value 2 at position 1; want 0 or 1"},
		{"too long", func(b *accel.Batch) {}, 2, "row 0: 3 tokens; the model has 2 positions (position 2 is out of range)"},
		{"negative id", func(b *accel.Batch) { b.IDs[4] = -1 }, 8, "row 1 position 1: token id -1 out of range"},
		{"huge id", func(b *accel.Batch) { b.IDs[0] = math.MaxInt32 + 1 }, 8, "row 0 position 0: token id 2147483648"},
		{"negative type", func(b *accel.Batch) { b.TypeIDs[2] = -3 }, 8, "row 0 position 2: type id -3 out of range"},
		{"maxPos", func(b *accel.Batch) {}, 0, "maxPos 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := ok()
			tc.mutate(&b)
			var dst packed.Batch
			err := packed.Pack(&dst, b, tc.maxPos)
			if !errors.Is(err, packed.ErrBadBatch) || !errors.Is(err, accel.ErrBadBatch) {
				t.Fatalf("Pack = %v; want packed.ErrBadBatch and accel.ErrBadBatch", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Pack = %q; want it to say %q", err, tc.want)
			}
		})
	}
	// Padding after the mask ends may hold anything, even invalid ids.
	b := ok()
	b.IDs[5], b.TypeIDs[5] = -7, -7
	var dst packed.Batch
	if err := packed.Pack(&dst, b, 8); err != nil {
		t.Errorf("Pack with junk in the padding: %v", err)
	}
}

func TestValidate(t *testing.T) {
	c := tinyConfig() // vocab 50, 2 types, 128 positions
	good := func() *packed.Batch {
		return &packed.Batch{
			IDs: []int32{1, 2, 3, 4}, Types: []int32{0, 1, 0, 0}, Pos: []int32{0, 1, 2, 0},
			Start: []int32{0, 3, 4}, MaxLen: 3,
		}
	}
	if err := good().Validate(c); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*packed.Batch)
		want   string
	}{
		{"id too large", func(b *packed.Batch) { b.IDs[3] = 50 }, "row 1 position 0: token id 50; want 0..49 (vocab_size 50)"},
		{"negative id", func(b *packed.Batch) { b.IDs[1] = -1 }, "row 0 position 1: token id -1"},
		{"type too large", func(b *packed.Batch) { b.Types[2] = 2 }, "row 0 position 2: type id 2; want 0..1 (type_vocab_size 2)"},
		{"position", func(b *packed.Batch) { b.Pos[2] = 5 }, "row 0 position 2: Pos[2] = 5; want 2"},
		{"no texts", func(b *packed.Batch) { b.Start = []int32{0} }, "Start has 1 elements"},
		{"start not 0", func(b *packed.Batch) { b.Start[0] = 1 }, "Start[0] = 1"},
		{"end", func(b *packed.Batch) { b.Start[2] = 3 }, "Start[2] = 3; want the token count 4"},
		{"empty text", func(b *packed.Batch) { b.Start = []int32{0, 0, 4}; b.Pos = []int32{0, 1, 2, 3}; b.MaxLen = 4 }, "row 0: Start[0] = 0, Start[1] = 0"},
		{"lengths", func(b *packed.Batch) { b.Types = b.Types[:3] }, "4 ids, 3 types and 4 positions"},
		{"max len", func(b *packed.Batch) { b.MaxLen = 4 }, "MaxLen 4; the longest text has 3 tokens"},
		{"too long", func(b *packed.Batch) {
			n := c.MaxPositionEmbeddings + 1
			b.IDs, b.Types, b.Pos = make([]int32, n), make([]int32, n), make([]int32, n)
			for i := range b.Pos {
				b.Pos[i] = int32(i)
			}
			b.Start, b.MaxLen = []int32{0, int32(n)}, n
		}, "row 0: 129 tokens; the model has 128 positions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := good()
			tc.mutate(b)
			err := b.Validate(c)
			if !errors.Is(err, packed.ErrBadBatch) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v; want ErrBadBatch saying %q", err, tc.want)
			}
		})
	}
}
