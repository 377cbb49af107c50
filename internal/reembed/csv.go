package reembed

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// csvReader reads a CSV file with a header row naming its columns. A row
// that does not parse (a bare quote, a short row) is a bad record; a record
// longer than MaxLineBytes stops the job, since an unbalanced quote cannot
// be resynchronized and the csv package would otherwise buffer it whole.
type csvReader struct {
	f      *os.File
	guard  *guardReader
	cr     *csv.Reader
	name   string
	fields Fields
	limits Limits
	base   int64 // byte offset the csv.Reader started at
	row    int64 // data rows consumed
	id     int   // column indices
	text   int
	meta   []int
}

// guardReader fails a read once more than limit bytes were read since the
// last mark, bounding what csv.Reader buffers for one record.
type guardReader struct {
	r     io.Reader
	n     int64 // bytes read
	mark  int64
	limit int64
}

var errRecordTooLong = errors.New("record too long")

func (g *guardReader) Read(p []byte) (int, error) {
	if g.n-g.mark > g.limit {
		return 0, errRecordTooLong
	}
	n, err := g.r.Read(p)
	g.n += int64(n)
	return n, err
}

func openCSV(path string, fields Fields, limits Limits, at Position) (_ *csvReader, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSource, err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	r := &csvReader{f: f, name: path, fields: fields, limits: limits, row: at.Record}
	r.reset(0)
	header, err := r.cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: header row: %v", ErrSource, path, err)
	}
	if err := r.columns(header); err != nil {
		return nil, err
	}
	start := r.cr.InputOffset()
	if at.Offset > start {
		start = at.Offset
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%w: %s: seek to %d: %v", ErrSource, path, start, err)
	}
	r.reset(start)
	return r, nil
}

// reset starts a csv.Reader at byte offset off of the file (already there).
func (r *csvReader) reset(off int64) {
	// The guard allows the buffer csv.Reader's bufio fills ahead.
	r.guard = &guardReader{r: r.f, limit: int64(r.limits.MaxLineBytes) + 4096}
	r.cr = csv.NewReader(bufio.NewReaderSize(r.guard, 4096))
	r.cr.FieldsPerRecord = -1
	r.cr.ReuseRecord = true
	r.base = off
}

func (r *csvReader) columns(header []string) error {
	idx := make(map[string]int, len(header))
	for i, h := range header {
		if i == 0 {
			h = trimBOM(h)
		}
		if _, dup := idx[h]; !dup {
			idx[h] = i
		}
	}
	var ok bool
	if r.id, ok = idx[r.fields.ID]; !ok {
		return fmt.Errorf("%w: %s has no id column %q (columns: %q)", ErrSource, r.name, r.fields.ID, header)
	}
	if r.text, ok = idx[r.fields.Text]; !ok {
		return fmt.Errorf("%w: %s has no text column %q (columns: %q)", ErrSource, r.name, r.fields.Text, header)
	}
	r.meta = make([]int, len(r.fields.Metadata))
	for k, m := range r.fields.Metadata {
		if r.meta[k], ok = idx[m]; !ok {
			r.meta[k] = -1
		}
	}
	return nil
}

func trimBOM(s string) string {
	if len(s) >= 3 && s[:3] == "\xef\xbb\xbf" {
		return s[3:]
	}
	return s
}

func (r *csvReader) pos() (int64, int64) { return r.row, r.base + r.cr.InputOffset() }
func (r *csvReader) done() int64         { return r.base + r.cr.InputOffset() }
func (r *csvReader) Close() error        { return r.f.Close() }

func (r *csvReader) next() (Record, error) {
	r.guard.mark = r.guard.n
	row, err := r.cr.Read()
	if err == io.EOF {
		return Record{}, io.EOF
	}
	r.row++
	rec := Record{Where: fmt.Sprintf("%s:row %d", r.name, r.row)}
	var pe *csv.ParseError
	switch {
	case errors.Is(err, errRecordTooLong):
		return Record{}, fmt.Errorf("%w: %s: a record is more than %d bytes (unbalanced quote?)", ErrSource, rec.Where, r.limits.MaxLineBytes)
	case errors.As(err, &pe):
		rec.Reason = "not valid CSV: " + pe.Err.Error()
		return rec, nil
	case err != nil:
		return Record{}, fmt.Errorf("%w: %s: %v", ErrSource, rec.Where, err)
	}
	field := func(i int) (string, bool) {
		if i < 0 || i >= len(row) {
			return "", false
		}
		return row[i], true
	}
	var ok bool
	if rec.ID, ok = field(r.id); !ok {
		rec.Reason = fmt.Sprintf("no id field %q (row has %d fields)", r.fields.ID, len(row))
		return rec, nil
	}
	rec.Text, _ = field(r.text)
	meta := map[string]json.RawMessage{}
	for k, i := range r.meta {
		if v, ok := field(i); ok {
			if !utf8.ValidString(v) {
				rec.Reason = fmt.Sprintf("field %q is not valid UTF-8", r.fields.Metadata[k])
				return rec, nil
			}
			meta[r.fields.Metadata[k]], _ = json.Marshal(v)
		}
	}
	if rec.Metadata, err = metadataJSON(meta); err != nil {
		rec.Reason = "metadata: " + err.Error()
	}
	r.limits.check(&rec)
	return rec, nil
}
