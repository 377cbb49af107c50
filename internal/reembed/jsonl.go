package reembed

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// jsonlReader reads JSON lines: one object per line, blank lines skipped.
// A line longer than MaxLineBytes is skipped up to its newline and reported
// as a bad record, so memory stays bounded by MaxLineBytes.
type jsonlReader struct {
	f      *os.File
	br     *bufio.Reader
	name   string
	fields Fields
	limits Limits
	line   int64 // lines consumed
	off    int64 // bytes consumed
	buf    []byte
	parse  func(where string, line []byte) Record
}

func openJSONL(path string, export bool, fields Fields, limits Limits, at Position) (*jsonlReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSource, err)
	}
	if _, err := f.Seek(at.Offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: seek to %d: %v", ErrSource, path, at.Offset, err)
	}
	r := &jsonlReader{f: f, br: bufio.NewReaderSize(f, 64<<10), name: path, fields: fields, limits: limits, line: at.Record, off: at.Offset}
	r.parse = fields.fromJSON
	if export {
		r.parse = fields.fromExport
	}
	return r, nil
}

func (r *jsonlReader) pos() (int64, int64) { return r.line, r.off }
func (r *jsonlReader) done() int64         { return r.off }
func (r *jsonlReader) Close() error        { return r.f.Close() }

func (r *jsonlReader) next() (Record, error) {
	for {
		line, tooLong, err := r.readLine()
		if err != nil {
			return Record{}, err
		}
		where := fmt.Sprintf("%s:%d", r.name, r.line)
		if tooLong {
			return Record{Where: where, Reason: fmt.Sprintf("line is more than %d bytes", r.limits.MaxLineBytes)}, nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		rec := r.parse(where, line)
		r.limits.check(&rec)
		return rec, nil
	}
}

// readLine returns the next line without its newline, or tooLong when it
// exceeds MaxLineBytes (then the line was read past and dropped); io.EOF
// when no bytes are left.
func (r *jsonlReader) readLine() (line []byte, tooLong bool, err error) {
	r.buf = r.buf[:0]
	n := 0
	for {
		chunk, err := r.br.ReadSlice('\n')
		n += len(chunk)
		if !tooLong {
			if len(r.buf)+len(chunk) > r.limits.MaxLineBytes+1 { // +1: the newline
				tooLong, r.buf = true, r.buf[:0]
			} else {
				r.buf = append(r.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && n == 0:
			return nil, false, io.EOF
		case err != nil && err != io.EOF:
			return nil, false, fmt.Errorf("%w: %s line %d: %v", ErrSource, r.name, r.line+1, err)
		}
		r.line++
		r.off += int64(n)
		return bytes.TrimSuffix(r.buf, []byte("\n")), tooLong, nil
	}
}

// fromJSON maps one JSON object to a record.
func (f Fields) fromJSON(where string, line []byte) Record {
	rec := Record{Where: where}
	if !utf8.Valid(line) {
		rec.Reason = fmt.Sprintf("not valid UTF-8 (byte %d)", invalidUTF8At(line))
		return rec
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil || obj == nil {
		rec.Reason = "not a JSON object"
		if err != nil {
			rec.Reason += ": " + err.Error()
		}
		return rec
	}
	if raw, ok := obj[f.ID]; !ok || string(raw) == "null" {
		rec.Reason = fmt.Sprintf("no id field %q", f.ID)
		return rec
	} else if rec.ID, ok = scalarID(raw); !ok {
		rec.Reason = fmt.Sprintf("id field %q is not a string or number", f.ID)
		return rec
	}
	raw, ok := obj[f.Text]
	if !ok || string(raw) == "null" {
		rec.Reason = fmt.Sprintf("no text field %q", f.Text)
		return rec
	}
	if json.Unmarshal(raw, &rec.Text) != nil {
		rec.Reason = fmt.Sprintf("text field %q is not a string", f.Text)
		return rec
	}
	meta := map[string]json.RawMessage{}
	for _, k := range f.Metadata {
		if v, ok := obj[k]; ok {
			meta[k] = v
		}
	}
	var err error
	if rec.Metadata, err = metadataJSON(meta); err != nil {
		rec.Reason = "metadata: " + err.Error()
	}
	return rec
}

// invalidUTF8At returns the offset of the first byte of b that is not
// part of valid UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}
