// Package framelog is the frame format of embedd's two append-only logs:
// the embedded store's log (internal/store/embedded) and the write-ahead
// log of durable mode (internal/store/wal). A log is a sequence of frames
//
//	frame = u32le payload length | u32le CRC-32C (Castagnoli) of payload | payload
//
// (the embedded log puts an 8-byte magic in front of its first frame). The
// package owns what both logs must agree on: encoding a frame, and reading
// frames back so that a torn or corrupt tail is found, not trusted. A Reader
// stops at the first frame that runs past the end of the log (torn: a
// crash while appending) or whose length is over the log's limit or whose
// CRC does not match (corrupt); its owner then truncates the file at
// Offset, so a crash loses at most the frame being written. Lengths are
// claims, not allocation sizes: a payload is allocated only once its bytes
// are known to be there.
//
// What differs between the two logs stays with them: the payload encoding
// (a hand-written op codec; gob), the magic, the per-frame limit (1 GiB;
// 256 MiB), when to fsync, and what a position is (the embedded store
// chains a CRC-64 over frame headers to name a log prefix in its graph
// snapshots; the WAL keeps a checkpoint offset). The on-disk format is the
// one both logs wrote before this package existed, so their files and
// fuzz corpora decode unchanged.
//
// Concurrency: the functions are pure; a Reader is used by one goroutine.
package framelog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// HeaderSize is the size of a frame's header: length and CRC.
const HeaderSize = 8

// Errors a Reader stops with (other than io.EOF at the end of the log).
var (
	// ErrTorn reports a frame that runs past the end of the log; it wraps
	// io.ErrUnexpectedEOF.
	ErrTorn = fmt.Errorf("framelog: torn frame: %w", io.ErrUnexpectedEOF)
	// ErrCorrupt reports a frame whose length is over the limit or whose
	// CRC does not match its payload.
	ErrCorrupt = errors.New("framelog: corrupt frame")
)

var table = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C of p, as a frame header holds it.
func Checksum(p []byte) uint32 { return crc32.Checksum(p, table) }

// Append appends the frame of payload to dst and returns the result.
func Append(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, Checksum(payload))
	return append(dst, payload...)
}

// Seal writes the header of frame, whose first HeaderSize bytes were left
// for it and whose payload follows; an encoder can so write the payload in
// place. The caller bounds the payload's length.
func Seal(frame []byte) {
	p := frame[HeaderSize:]
	binary.LittleEndian.PutUint32(frame, uint32(len(p)))
	binary.LittleEndian.PutUint32(frame[4:], Checksum(p))
}

// Reader reads the frames of a log.
type Reader struct {
	r     io.Reader
	left  int64  // bytes of the log not yet read
	limit uint32 // largest payload
	off   int64  // bytes consumed by whole frames
	hdr   [HeaderSize]byte
}

// NewReader reads frames of at most limit payload bytes from r, which holds
// size bytes of log.
func NewReader(r io.Reader, size int64, limit uint32) *Reader {
	return &Reader{r: r, left: size, limit: limit}
}

// Next returns the next frame's payload. At exactly the end of the log it
// returns io.EOF; at a torn frame an error wrapping ErrTorn, at a corrupt
// one ErrCorrupt, and the error of the underlying reader as it is. After an
// error the Reader stays where it was.
func (r *Reader) Next() ([]byte, error) {
	if r.left == 0 {
		return nil, io.EOF
	}
	if r.left < HeaderSize {
		return nil, fmt.Errorf("%w: %d header bytes of %d", ErrTorn, r.left, HeaderSize)
	}
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(r.hdr[:])
	if n > r.limit {
		return nil, fmt.Errorf("%w: %d bytes; limit %d", ErrCorrupt, n, r.limit)
	}
	if int64(n) > r.left-HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, %d left", ErrTorn, n, r.left-HeaderSize)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.r, p); err != nil {
		return nil, err
	}
	if Checksum(p) != binary.LittleEndian.Uint32(r.hdr[4:]) {
		return nil, fmt.Errorf("%w: CRC mismatch", ErrCorrupt)
	}
	r.left -= HeaderSize + int64(n)
	r.off += HeaderSize + int64(n)
	return p, nil
}

// Header returns the header of the frame Next last returned; the slice is
// valid until the next call of Next.
func (r *Reader) Header() []byte { return r.hdr[:] }

// Offset returns the bytes consumed by the frames Next returned.
func (r *Reader) Offset() int64 { return r.off }
