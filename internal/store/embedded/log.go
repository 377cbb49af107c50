package embedded

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/framelog"
)

// Log format (file "embedd.log" in Options.Dir):
//
//	header  = "EMBEDDL1"
//	entry   = u32le payload length | u32le CRC-32C(payload) | payload
//	payload = op byte | op fields (uvarint lengths, little-endian floats)
//
// An entry is a frame of package framelog, the frame format this log
// shares with the write-ahead log (internal/store/wal): one reader finds
// torn and corrupt tails for both. What is this log's own: the magic, the
// payload codec below (compact and allocation-bounded where the WAL uses
// gob), the 1 GiB entry limit, and the position (see logPos), which chains
// a CRC-64 over the entries' headers so that a graph snapshot can name the
// log prefix it indexes.
//
// One entry holds one whole batch, so a batch is atomic on disk: a torn or
// corrupt entry is dropped with everything after it, and the file is
// truncated back to the last good entry on open.
const (
	logName   = "embedd.log"
	logMagic  = "EMBEDDL1"
	maxEntry  = 1 << 30
	opColl    = 1 // name, dims (before versions: version DefaultVersion, unbound, made live if nothing is)
	opUpsert  = 2 // coll, n, n*(id, dims*f32, meta, mv, unix nanos) (before text hashes)
	opDelete  = 3 // coll, n, n*id
	opEntSet  = 4 // n, n*(id, emb, scale, mv, ts ms, expire unix nanos or 0, nf, nf*(name, f64))
	opEntDel  = 5 // n, n*id
	opVersion = 6 // logical, version, dims, model version, created unix nanos or 0, live byte (0 or 1)
	opAlias   = 7 // logical, version
	opDrop    = 8 // logical, version
	opUpsertH = 9 // as opUpsert, each record followed by its text hash
	entryHead = framelog.HeaderSize
)

// A "coll" in an entry is a version's key (versionKey); a log written
// before versions names collections whose key is their name.

// crcTable is the CRC-32C of the snapshot format (the log's frames are
// framelog's).
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
	return framelog.Append(make([]byte, 0, entryHead+len(e.b)), e.b)
}

// The payload of each op; apply decodes them.

func encodeColl(name string, dims int) *enc {
	e := &enc{}
	e.byte(opColl)
	e.str(name)
	e.uvarint(uint64(dims))
	return e
}

func encodeVersion(c *collection, live bool) *enc {
	e := &enc{}
	e.byte(opVersion)
	e.str(c.logical)
	e.str(c.version)
	e.uvarint(uint64(c.dims))
	e.str(c.model)
	e.varint(unixNanos(c.created))
	e.byte(map[bool]byte{false: 0, true: 1}[live])
	return e
}

// unixNanos is t in unix nanoseconds, 0 for the zero time.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// encodeAliasOp is opAlias or opDrop of logical's version.
func encodeAliasOp(op byte, logical, version string) *enc {
	e := &enc{}
	e.byte(op)
	e.str(logical)
	e.str(version)
	return e
}

func encodeUpsert(coll string, dims int, recs []store.Record) *enc {
	e := &enc{b: make([]byte, 0, len(recs)*(dims*4+96))}
	e.byte(opUpsertH)
	e.str(coll)
	e.uvarint(uint64(len(recs)))
	for _, r := range recs {
		e.str(r.ID)
		e.f32s(r.Vector)
		e.bytes(r.Metadata)
		e.str(r.ModelVersion)
		e.varint(r.UpdatedAt.UnixNano())
		e.str(r.TextHash)
	}
	return e
}

// encodeDelete is opDelete of ids in coll, or opEntDel of entity ids when
// coll is nil.
func encodeDelete(coll *string, ids []string) *enc {
	e := &enc{}
	if coll != nil {
		e.byte(opDelete)
		e.str(*coll)
	} else {
		e.byte(opEntDel)
	}
	e.uvarint(uint64(len(ids)))
	for _, id := range ids {
		e.str(id)
	}
	return e
}

func encodeEntSet(ents []*entity) *enc {
	e := &enc{}
	e.byte(opEntSet)
	e.uvarint(uint64(len(ents)))
	for _, ent := range ents {
		e.str(ent.ID)
		e.uvarint(uint64(len(ent.Embedding)))
		for _, b := range ent.Embedding {
			e.byte(byte(b))
		}
		e.f32(ent.Scale)
		e.str(ent.ModelVersion)
		e.varint(ent.UpdatedAt.UnixMilli())
		e.varint(ent.expire)
		e.uvarint(uint64(len(ent.Features)))
		for _, k := range slices.Sorted(maps.Keys(ent.Features)) {
			e.str(k)
			e.f64(ent.Features[k])
		}
	}
	return e
}

var errShort = errors.New("embedded: short payload")

// dec reads one payload; the first error sticks.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() { d.err = errShort; d.b = nil }

// take consumes n bytes; nil (and the sticky error) when fewer are left.
func (d *dec) take(n int) []byte {
	if len(d.b) < n {
		d.fail()
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *dec) byte() byte {
	if s := d.take(1); s != nil {
		return s[0]
	}
	return 0
}
func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if !d.skip(n) {
		return 0
	}
	return v
}
func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if !d.skip(n) {
		return 0
	}
	return v
}

// skip consumes the n bytes a varint decoder read; n <= 0 is its failure.
func (d *dec) skip(n int) bool {
	if n <= 0 {
		d.fail()
		return false
	}
	d.b = d.b[n:]
	return true
}
func (d *dec) bytes() []byte {
	n := d.uvarint()
	if uint64(len(d.b)) < n {
		d.fail()
		return nil
	}
	return d.take(int(n))
}
func (d *dec) str() string { return string(d.bytes()) }

// strs reads a count and that many strings; the count is a claim, so the
// slice grows with what is there.
func (d *dec) strs() []string {
	n := d.uvarint()
	ids := make([]string, 0, min(n, uint64(len(d.b))))
	for i := uint64(0); i < n && d.err == nil; i++ {
		ids = append(ids, d.str())
	}
	return ids
}
func (d *dec) u32() uint32 {
	if s := d.take(4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}
func (d *dec) u64() uint64 {
	if s := d.take(8); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}
func (d *dec) f32() float32 { return math.Float32frombits(d.u32()) }
func (d *dec) f64() float64 { return math.Float64frombits(d.u64()) }

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

// replayLog calls apply for every intact entry of path and truncates a torn
// or corrupt tail. It calls at with the log position before every entry and
// at the end (after the last intact entry), and returns the end position.
// It creates the file when it does not exist.
func replayLog(path string, apply func(payload []byte) error, at func(logPos)) (*os.File, logPos, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, logPos{}, err
	}
	st, err := f.Stat()
	if err == nil && st.Mode().Perm()&0o077 != 0 {
		err = f.Chmod(0o600) // a log written by an older version: it holds user data
	}
	if err != nil {
		return nil, logPos{}, errors.Join(err, f.Close())
	}
	if st.Size() == 0 {
		return newLog(f, path, at)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	head := make([]byte, len(logMagic))
	if _, err := io.ReadFull(br, head); err != nil || string(head) != logMagic {
		return nil, logPos{}, errors.Join(fmt.Errorf("embedded: %s is not an embedd log", path), f.Close())
	}
	good := logPos{off: int64(len(logMagic))}
	r := framelog.NewReader(br, st.Size()-good.off, maxEntry)
	for {
		at(good)
		payload, err := r.Next()
		if err != nil {
			break // the end, or a torn or corrupt tail
		}
		if err := apply(payload); err != nil {
			break
		}
		good.add(r.Header(), len(payload))
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

// newLog writes the magic into the empty file f, durably.
func newLog(f *os.File, path string, at func(logPos)) (*os.File, logPos, error) {
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
