package reembed

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/embedd/embedd/internal/store"
)

// Sources: files read in a deterministic order (Expand), one record at a
// time, each record bounded (Limits) and located (Record.Where), so a
// checkpoint can name the position after any record and a resumed job
// reads on from there.

// Formats of source files.
const (
	FormatJSONL   = "jsonl"
	FormatCSV     = "csv"
	FormatParquet = "parquet"
)

// File is one source file, with what the job's fingerprint records of it.
type File struct {
	Path    string `json:"path"`
	Format  string `json:"format"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mod_time"` // Unix nanoseconds
}

// Fields maps source fields to a record.
type Fields struct {
	// ID and Text name the id and text fields (JSON keys, CSV header
	// columns, Parquet top-level columns; for a collection source, Text
	// names a metadata key). Required.
	ID   string `json:"id"`
	Text string `json:"text"`
	// Metadata names the fields copied into the record's metadata object
	// (missing ones are left out). Empty: {}.
	Metadata []string `json:"metadata,omitempty"`
}

// Limits bound every record read. Zero fields take DefaultLimits'.
type Limits struct {
	// MaxLineBytes bounds one JSONL line or CSV record, in bytes; a longer
	// JSONL line is a bad record, a longer CSV record stops the job (CSV
	// cannot be resynchronized). Default 1 MiB.
	MaxLineBytes int
	// MaxTextBytes bounds a text, in bytes: the engine's limit
	// (engine.Options.MaxTextBytes). Default 64 KiB.
	MaxTextBytes int
}

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits { return Limits{MaxLineBytes: 1 << 20, MaxTextBytes: 64 << 10} }

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxLineBytes <= 0 {
		l.MaxLineBytes = d.MaxLineBytes
	}
	if l.MaxTextBytes <= 0 {
		l.MaxTextBytes = d.MaxTextBytes
	}
	return l
}

// Record is one record read from a source. A bad record has Reason set
// (and ID when it could be read).
type Record struct {
	// Where locates it: "path:line" (JSONL) or "path:row N" (CSV, Parquet,
	// collection exports).
	Where    string
	ID       string
	Text     string
	Metadata []byte // a JSON object; nil for {}
	Reason   string
}

// Position is where a job is in its sources: every record before it was
// handled. Record counts what File's reader consumed (JSONL lines, CSV and
// Parquet rows); Offset is the byte offset after them (JSONL, CSV).
type Position struct {
	File   int   `json:"file"`
	Record int64 `json:"record"`
	Offset int64 `json:"offset"`
}

// ErrSource reports a source that cannot be read as a whole (a missing
// column, an unreadable file); bad records are not errors.
var ErrSource = errors.New("reembed: bad source")

// Expand resolves paths and globs to files sorted by path (duplicates
// removed), with their size and modification time. format is "" (by
// extension: .jsonl/.json/.ndjson, .csv, .parquet) or one of the Format
// constants for every file.
func Expand(patterns []string, format string) ([]File, error) {
	var paths []string
	for _, p := range patterns {
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("%w: pattern %q: %v", ErrSource, p, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%w: %q matches no file", ErrSource, p)
		}
		paths = append(paths, m...)
	}
	slices.Sort(paths)
	paths = slices.Compact(paths)
	files := make([]File, 0, len(paths))
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSource, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: %s is not a regular file", ErrSource, p)
		}
		f := File{Path: p, Format: format, Size: st.Size(), ModTime: st.ModTime().UnixNano()}
		if f.Format == "" {
			if f.Format = formatOf(p); f.Format == "" {
				return nil, fmt.Errorf("%w: %s: unknown extension; want .jsonl, .csv or .parquet (or set the format)", ErrSource, p)
			}
		}
		files = append(files, f)
	}
	return files, nil
}

func formatOf(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson", ".json":
		return FormatJSONL
	case ".csv":
		return FormatCSV
	case ".parquet":
		return FormatParquet
	}
	return ""
}

// fileReader reads the records of one file.
type fileReader interface {
	// next returns the next record, or io.EOF; an error stops the job.
	next() (Record, error)
	// pos returns the records consumed and the byte offset after them.
	pos() (record, offset int64)
	// done returns the bytes of the file read so far, for progress.
	done() int64
	Close() error
}

// Reader reads the records of files in order from a position.
type Reader struct {
	files  []File
	fields Fields
	limits Limits
	at     Position
	cur    fileReader
}

// NewReader returns a Reader of files from at.
func NewReader(files []File, fields Fields, limits Limits, at Position) *Reader {
	return &Reader{files: files, fields: fields, limits: limits.withDefaults(), at: at}
}

// Next returns the next record and the position after it, or io.EOF.
func (r *Reader) Next() (Record, Position, error) {
	for r.at.File < len(r.files) {
		if r.cur == nil {
			fr, err := openFile(r.files[r.at.File], r.fields, r.limits, r.at)
			if err != nil {
				return Record{}, r.at, err
			}
			r.cur = fr
		}
		rec, err := r.cur.next()
		if err == nil {
			r.at.Record, r.at.Offset = r.cur.pos()
			return rec, r.at, nil
		}
		if err != io.EOF {
			return Record{}, r.at, err
		}
		cerr := r.cur.Close()
		r.cur = nil
		if cerr != nil {
			return Record{}, r.at, cerr
		}
		r.at = Position{File: r.at.File + 1}
	}
	return Record{}, r.at, io.EOF
}

// Progress returns the bytes of the sources behind the reader and their
// total size.
func (r *Reader) Progress() (done, total int64) {
	for i, f := range r.files {
		total += f.Size
		if i < r.at.File {
			done += f.Size
		}
	}
	if r.cur != nil {
		done += r.cur.done()
	}
	return done, total
}

// Close closes the file being read.
func (r *Reader) Close() error {
	if r.cur == nil {
		return nil
	}
	err := r.cur.Close()
	r.cur = nil
	return err
}

func openFile(f File, fields Fields, limits Limits, at Position) (fileReader, error) {
	var fr fileReader
	var err error
	switch f.Format {
	case FormatJSONL, FormatExport:
		fr, err = openJSONL(f.Path, f.Format == FormatExport, fields, limits, at)
	case FormatCSV:
		fr, err = openCSV(f.Path, fields, limits, at)
	case FormatParquet:
		fr, err = openParquet(f.Path, fields, limits, at)
	default:
		err = fmt.Errorf("%w: %s: unknown format %q", ErrSource, f.Path, f.Format)
	}
	return fr, err
}

// check sets rec.Reason for what every source shares: the id per the data
// model, a non-empty text of at most MaxTextBytes of valid UTF-8, metadata
// of at most store.MaxMetaBytes.
func (l Limits) check(rec *Record) {
	if rec.Reason != "" {
		return
	}
	switch err := store.CheckID(rec.ID); {
	case rec.ID == "":
		rec.Reason = "no id"
	case err != nil:
		rec.Reason = "id " + err.Error()
	case rec.Text == "":
		rec.Reason = "no text (or an empty one)"
	case len(rec.Text) > l.MaxTextBytes:
		rec.Reason = fmt.Sprintf("text is %d bytes; limit %d", len(rec.Text), l.MaxTextBytes)
	case !utf8.ValidString(rec.Text):
		rec.Reason = "text is not valid UTF-8"
	case len(rec.Metadata) > store.MaxMetaBytes:
		rec.Reason = fmt.Sprintf("metadata is %d bytes; limit %d", len(rec.Metadata), store.MaxMetaBytes)
	}
}

// metadataJSON builds the metadata object from the named fields' JSON
// values (keys sorted: the same fields give the same bytes).
func metadataJSON(vals map[string]json.RawMessage) ([]byte, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	return json.Marshal(vals)
}

// scalarID returns a JSON id value as text: a string, or a number's literal.
func scalarID(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if _, err := strconv.ParseFloat(string(n), 64); err == nil {
			return string(n), true
		}
	}
	return "", false
}
