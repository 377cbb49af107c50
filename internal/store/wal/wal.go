// Package wal is the write-ahead log of embedd's durable mode: writes that
// could not reach a store are appended here, fsynced, acknowledged, and
// replayed in order by one goroutine once the store is back.
//
// Format: one file, "wal.log", of frames (package framelog, the frame
// format it shares with the embedded store's log)
//
//	length  uint32 little-endian, bytes of payload (at most MaxEntryBytes)
//	crc     uint32 little-endian, CRC-32C (Castagnoli) of payload
//	payload gob-encoded Entry
//
// and a checkpoint file, "wal.ckpt", holding the offset of the first frame
// not yet applied (8 bytes little-endian, replaced atomically,
// fsutil.WriteFile).
// Open truncates a torn or corrupt tail (a crash during Append loses only
// the unacknowledged frame being written). When every frame is applied the
// log is truncated to zero and the checkpoint reset.
//
// Why the payload is gob while the embedded store's log has its own codec
// (the frames are the same): a WAL entry carries whole store.Record and
// store.Entity values for whichever stores are configured and lives only
// until it is applied, so a self-describing encoding that tolerates fields
// added between versions fits; the embedded log is that store's permanent
// state, replayed at every Open, so it is compact and its decoder bounds
// every allocation by the bytes it reads.
//
// Invariants:
//   - Append returns only after the frame is on disk (fsync); an
//     acknowledged entry survives a crash.
//   - Entries are applied in append order, each at least once: a crash
//     between applying an entry and moving the checkpoint replays it, so
//     the apply function must be idempotent (store upserts and deletes by
//     id are).
//   - An entry the apply function rejects as invalid (store.ErrInvalid)
//     can never succeed; it is moved to "wal.dead" (same frame format) and
//     reported, so it never blocks the entries behind it. Any other error
//     is retried with exponential backoff, for ever.
//
// Concurrency: Append and Pending are safe for concurrent use; Run applies
// entries from one goroutine.
package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/embedd/embedd/internal/fsutil"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/framelog"
)

// MaxEntryBytes bounds one frame's payload.
const MaxEntryBytes = 256 << 20

// Errors.
var (
	ErrClosed   = errors.New("wal: closed")
	ErrTooLarge = errors.New("wal: entry too large")
)

// Kind is the operation of an Entry.
type Kind uint8

const (
	// Upsert writes Records to the vector store and Entities to the
	// online store.
	Upsert Kind = iota + 1
	// Delete removes IDs from the vector store and EntityIDs from the
	// online store.
	Delete
)

// Entry is one logged write.
type Entry struct {
	Kind       Kind
	Collection string
	// Version is the collection version the entry writes; "" (as in
	// entries written before versions) means the live version when the
	// entry is applied.
	Version   string
	Records   []store.Record
	Entities  []store.Entity
	TTL       time.Duration
	IDs       []string
	EntityIDs []string
}

// Options configures a Log.
type Options struct {
	// Dir holds wal.log, wal.ckpt and wal.dead; created if missing.
	Dir string
	// MinBackoff and MaxBackoff bound the retry delay of a failing entry.
	// Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Logger reports retries and dead entries. Default slog.Default().
	Logger *slog.Logger
	// MaxBytes bounds wal.log: an Append that would pass it fails with
	// ErrFull, naming the limit, and writes nothing (the caller's write is
	// then not acknowledged). The file is cut back to zero whenever every
	// entry is applied, so this bounds the writes queued during one
	// outage. Default DefaultMaxBytes.
	MaxBytes int64
}

// DefaultMaxBytes is Options.MaxBytes' default.
const DefaultMaxBytes = 1 << 30

// ErrFull reports an Append beyond Options.MaxBytes. It is a
// store.ErrUnavailable: the write could not be kept, retry later.
var ErrFull = fmt.Errorf("%w: write-ahead log full", store.ErrUnavailable)

// Log is an open write-ahead log.
type Log struct {
	opts Options
	f    *os.File

	mu      sync.Mutex
	size    int64 // bytes in wal.log
	applied int64 // checkpoint: offset of the first unapplied frame
	pending int   // frames after applied
	closed  bool
	wake    chan struct{}
	dead    int
}

// Open opens or creates the log in opts.Dir and recovers it.
func Open(opts Options) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("wal: Options.Dir is required")
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(opts.Dir, "wal.log"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	l := &Log{opts: opts, f: f, wake: make(chan struct{}, 1)}
	if err := l.recover(); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// recover reads the checkpoint, scans the frames after it and truncates a
// torn tail.
func (l *Log) recover() error {
	ck, err := os.ReadFile(filepath.Join(l.opts.Dir, "wal.ckpt"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("wal: %w", err)
	case len(ck) != 8:
		return fmt.Errorf("wal: checkpoint is %d bytes; want 8", len(ck))
	default:
		l.applied = int64(binary.LittleEndian.Uint64(ck))
	}
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	if l.applied > st.Size() {
		return fmt.Errorf("wal: checkpoint %d beyond log size %d", l.applied, st.Size())
	}
	r := framelog.NewReader(io.NewSectionReader(l.f, l.applied, st.Size()-l.applied), st.Size()-l.applied, MaxEntryBytes)
	for {
		if _, err := r.Next(); err != nil {
			break // io.EOF, or a torn/corrupt tail
		}
		l.pending++
	}
	off := l.applied + r.Offset()
	if off < st.Size() {
		l.opts.Logger.Warn("wal: truncating torn tail", "offset", off, "size", st.Size())
		if err := l.f.Truncate(off); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
	}
	l.size = off
	return nil
}

// readFrame reads the frame at r's position; n is the bytes consumed. A
// frame whose length runs past the end of r is torn (io.ErrUnexpectedEOF)
// and allocates nothing: the length field is a claim, not an allocation
// size.
func readFrame(r *io.SectionReader) (payload []byte, n int64, err error) {
	pos, _ := r.Seek(0, io.SeekCurrent)
	payload, err = framelog.NewReader(r, r.Size()-pos, MaxEntryBytes).Next()
	if err != nil {
		return nil, 0, err
	}
	return payload, int64(framelog.HeaderSize + len(payload)), nil
}

// frame encodes e as one frame, the payload gob-encoded in place after
// the header.
func frame(e *Entry) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write(make([]byte, framelog.HeaderSize))
	if err := gob.NewEncoder(&buf).Encode(e); err != nil {
		return nil, fmt.Errorf("wal: encode: %w", err)
	}
	b := buf.Bytes()
	if n := len(b) - framelog.HeaderSize; n > MaxEntryBytes {
		return nil, fmt.Errorf("%w: %d bytes; limit %d", ErrTooLarge, n, MaxEntryBytes)
	}
	framelog.Seal(b)
	return b, nil
}

// decode decodes one frame's payload. gob reads a message's length and
// allocates for it (up to 10 MiB at a time) before it reads the message, so
// the lengths are checked against the payload first: a length is a claim,
// and a payload that claims more than it holds is rejected without
// allocating for the claim.
func decode(p []byte) (*Entry, error) {
	if err := checkGobLengths(p); err != nil {
		return nil, err
	}
	var e Entry
	if err := gob.NewDecoder(bytes.NewReader(p)).Decode(&e); err != nil {
		return nil, err
	}
	return &e, nil
}

// checkGobLengths walks the messages of the gob stream p, each a length
// (gob's unsigned integer) and that many bytes, and fails at the first that
// runs past the end of p.
func checkGobLengths(p []byte) error {
	for len(p) > 0 {
		n, k := gobUint(p)
		if k == 0 {
			return errors.New("wal: malformed gob message length")
		}
		p = p[k:]
		if n > uint64(len(p)) {
			return fmt.Errorf("wal: gob message of %d bytes, %d left", n, len(p))
		}
		p = p[n:]
	}
	return nil
}

// gobUint decodes gob's unsigned integer at the start of p and returns it
// and its size (0 when malformed): a byte below 0x80 is the value, any
// other is the negated count (1 to 8) of big-endian bytes that follow.
func gobUint(p []byte) (v uint64, size int) {
	if p[0] < 0x80 {
		return uint64(p[0]), 1
	}
	c := -int(int8(p[0]))
	if c > 8 || len(p) <= c {
		return 0, 0
	}
	for _, b := range p[1 : 1+c] {
		v = v<<8 | uint64(b)
	}
	return v, 1 + c
}

// Append writes e and fsyncs before returning.
func (l *Log) Append(e *Entry) error {
	b, err := frame(e)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.size+int64(len(b)) > l.opts.MaxBytes {
		return fmt.Errorf("wal: %w: %d bytes of %d queued entries; this write needs %d more; limit %d (--wal-max-bytes)", ErrFull, l.size, l.pending, len(b), l.opts.MaxBytes)
	}
	if _, err := l.f.WriteAt(b, l.size); err != nil {
		return l.undo(err)
	}
	if err := l.f.Sync(); err != nil {
		return l.undo(err)
	}
	l.size += int64(len(b))
	l.pending++
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

// undo cuts a failed append back off the file.
func (l *Log) undo(err error) error {
	_ = l.f.Truncate(l.size)
	return fmt.Errorf("wal: append: %w", err)
}

// Pending reports the entries not yet applied.
func (l *Log) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending
}

// Dead reports the entries moved to wal.dead since Open.
func (l *Log) Dead() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dead
}

// Run applies pending entries in order with apply until ctx is done,
// waiting for Append when the log is empty. It returns ctx.Err().
func (l *Log) Run(ctx context.Context, apply func(context.Context, *Entry) error) error {
	backoff := l.opts.MinBackoff
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		payload, n, ok, err := l.next()
		if err != nil {
			return err
		}
		if !ok {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-l.wake:
				continue
			}
		}
		e, err := decode(payload)
		if err != nil {
			err = fmt.Errorf("%w: wal: decode: %w", store.ErrInvalid, err)
			if err := l.bury(payload, n, err); err != nil {
				return err
			}
			continue
		}
		err = apply(ctx, e)
		switch {
		case err == nil:
			backoff = l.opts.MinBackoff
			if err := l.advance(n); err != nil {
				return err
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, store.ErrInvalid):
			if err := l.bury(payload, n, err); err != nil {
				return err
			}
		default:
			l.opts.Logger.Warn("wal: apply failed; retrying", "collection", e.Collection, "pending", l.Pending(), "backoff", backoff, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, l.opts.MaxBackoff)
		}
	}
}

// next reads the first unapplied frame.
func (l *Log) next() (payload []byte, n int64, ok bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, 0, false, ErrClosed
	}
	if l.pending == 0 {
		return nil, 0, false, nil
	}
	payload, n, err = readFrame(io.NewSectionReader(l.f, l.applied, l.size-l.applied))
	if err != nil {
		return nil, 0, false, fmt.Errorf("wal: read at %d: %w", l.applied, err)
	}
	return payload, n, true, nil
}

// advance moves the checkpoint past one frame; when the log is drained it
// truncates it.
func (l *Log) advance(n int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.applied += n
	l.pending--
	if l.pending == 0 {
		if err := l.f.Truncate(0); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		l.size, l.applied = 0, 0
	}
	return l.writeCheckpoint()
}

func (l *Log) writeCheckpoint() error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(l.applied))
	if err := fsutil.WriteFile(filepath.Join(l.opts.Dir, "wal.ckpt"), b[:], 0o600); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}

// appendSync appends b to path and fsyncs it.
func appendSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}

// bury appends a frame that can never apply to wal.dead and moves on.
func (l *Log) bury(payload []byte, n int64, why error) error {
	if err := appendSync(filepath.Join(l.opts.Dir, "wal.dead"), framelog.Append(nil, payload)); err != nil {
		return err
	}
	l.opts.Logger.Error("wal: entry can never apply; moved to wal.dead", "err", why)
	l.mu.Lock()
	l.dead++
	l.mu.Unlock()
	return l.advance(n)
}

// Close closes the file; pending entries stay on disk for the next Open.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.f.Close()
}
