package embedded

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Log format (file "embedd.log" in Options.Dir):
//
//	header  = "EMBEDDL1"
//	entry   = u32le payload length | u32le CRC-32C(payload) | payload
//	payload = op byte | op fields (uvarint lengths, little-endian floats)
//
// One entry holds one whole batch, so a batch is atomic on disk: a torn or
// corrupt entry is dropped with everything after it, and the file is
// truncated back to the last good entry on open.
const (
	logName   = "embedd.log"
	logMagic  = "EMBEDDL1"
	maxEntry  = 1 << 30
	opColl    = 1 // name, dims
	opUpsert  = 2 // coll, n, n*(id, dims*f32, meta, mv, unix nanos)
	opDelete  = 3 // coll, n, n*id
	opEntSet  = 4 // n, n*(id, emb, scale, mv, ts ms, expire unix nanos or 0, nf, nf*(name, f64))
	opEntDel  = 5 // n, n*id
	entryHead = 8
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// enc builds one payload.
type enc struct{ b []byte }

func (e *enc) byte(c byte)      { e.b = append(e.b, c) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bytes(s []byte)   { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) f32(f float32)    { e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(f)) }
func (e *enc) f64(f float64)    { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(f)) }
func (e *enc) f32s(fs []float32) {
	e.b = slices.Grow(e.b, 4*len(fs))
	for _, f := range fs {
		e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(f))
	}
}

// frame wraps the payload in an entry.
func (e *enc) frame() []byte {
	out := make([]byte, entryHead, entryHead+len(e.b))
	binary.LittleEndian.PutUint32(out, uint32(len(e.b)))
	binary.LittleEndian.PutUint32(out[4:], crc32.Checksum(e.b, crcTable))
	return append(out, e.b...)
}

var errShort = errors.New("embedded: short payload")

// dec reads one payload; the first error sticks.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() { d.err = errShort; d.b = nil }
func (d *dec) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}
func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}
func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}
func (d *dec) bytes() []byte {
	n := d.uvarint()
	if uint64(len(d.b)) < n {
		d.fail()
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}
func (d *dec) str() string { return string(d.bytes()) }
func (d *dec) f32() float32 {
	if len(d.b) < 4 {
		d.fail()
		return 0
	}
	f := math.Float32frombits(binary.LittleEndian.Uint32(d.b))
	d.b = d.b[4:]
	return f
}
func (d *dec) u32() uint32 {
	if len(d.b) < 4 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}
func (d *dec) u64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// f32s fills dst; it is f32 in a loop without the per-value checks.
func (d *dec) f32s(dst []float32) {
	if len(d.b) < 4*len(dst) {
		d.fail()
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(d.b[4*i:]))
	}
	d.b = d.b[4*len(dst):]
}
func (d *dec) f64() float64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return f
}

// replayLog calls apply for every intact entry of path and truncates a torn
// or corrupt tail. It calls at with the log position before every entry and
// at the end (after the last intact entry), and returns the end position.
// It creates the file when it does not exist.
func replayLog(path string, apply func(payload []byte) error, at func(logPos)) (*os.File, logPos, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, logPos{}, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, logPos{}, errors.Join(err, f.Close())
	}
	if st.Size() == 0 {
		if _, err := f.Write([]byte(logMagic)); err != nil {
			return nil, logPos{}, errors.Join(err, f.Close())
		}
		if err := f.Sync(); err != nil {
			return nil, logPos{}, errors.Join(err, f.Close())
		}
		pos := logPos{off: int64(len(logMagic))}
		at(pos)
		return f, pos, syncDir(filepath.Dir(path))
	}
	r := bufio.NewReaderSize(f, 1<<20)
	head := make([]byte, len(logMagic))
	if _, err := io.ReadFull(r, head); err != nil || string(head) != logMagic {
		return nil, logPos{}, errors.Join(fmt.Errorf("embedded: %s is not an embedd log", path), f.Close())
	}
	good := logPos{off: int64(len(logMagic))}
	var hdr [entryHead]byte
	for {
		at(good)
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break // EOF or torn header
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if n > maxEntry || int64(n) > st.Size()-good.off-entryHead {
			break // corrupt, or torn: a length is a claim, not an allocation size
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			break
		}
		if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			break
		}
		if err := apply(payload); err != nil {
			break
		}
		good.off += entryHead + int64(n)
		good.seq++
		good.sum = crc64.Update(good.sum, crc64Table, hdr[:])
	}
	if good.off < st.Size() {
		if err := f.Truncate(good.off); err != nil {
			return nil, logPos{}, errors.Join(err, f.Close())
		}
		if err := f.Sync(); err != nil {
			return nil, logPos{}, errors.Join(err, f.Close())
		}
	}
	if _, err := f.Seek(good.off, io.SeekStart); err != nil {
		return nil, logPos{}, errors.Join(err, f.Close())
	}
	return f, good, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
