package reembed

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
)

// parquetReader reads a Parquet file's rows; the mapped fields must be
// top-level, non-repeated columns. Ids may be strings or integers, texts
// strings; metadata columns become JSON strings, numbers, booleans or null.
// Values are bounded by Limits after reading (parquet-go reads a page at a
// time, so memory is bounded by the file's page size).
type parquetReader struct {
	f      *os.File
	r      *parquet.Reader
	name   string
	fields Fields
	limits Limits
	size   int64
	total  int64 // rows in the file
	row    int64 // rows consumed
	buf    []parquet.Row
	at     int // next row of buf
	id     int // leaf column indices
	text   int
	meta   []int
}

const parquetReadAhead = 64

func openParquet(path string, fields Fields, limits Limits, at Position) (_ *parquetReader, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSource, err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSource, err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSource, path, err)
	}
	r := &parquetReader{f: f, name: path, fields: fields, limits: limits, size: st.Size(), total: pf.NumRows(), row: at.Record}
	if r.id, err = r.column(pf.Schema(), fields.ID); err != nil {
		return nil, err
	}
	if r.text, err = r.column(pf.Schema(), fields.Text); err != nil {
		return nil, err
	}
	for _, m := range fields.Metadata {
		c, err := r.column(pf.Schema(), m)
		if err != nil {
			c = -1 // a missing metadata column is left out
		}
		r.meta = append(r.meta, c)
	}
	r.r = parquet.NewReader(pf)
	if at.Record > 0 {
		if err := r.r.SeekToRow(at.Record); err != nil {
			return nil, fmt.Errorf("%w: %s: seek to row %d: %v", ErrSource, path, at.Record, err)
		}
	}
	return r, nil
}

func (r *parquetReader) column(s *parquet.Schema, name string) (int, error) {
	leaf, ok := s.Lookup(name)
	if !ok {
		return 0, fmt.Errorf("%w: %s has no column %q", ErrSource, r.name, name)
	}
	if leaf.MaxRepetitionLevel > 0 || !leaf.Node.Leaf() {
		return 0, fmt.Errorf("%w: %s: column %q is repeated or nested; want a top-level value", ErrSource, r.name, name)
	}
	return leaf.ColumnIndex, nil
}

func (r *parquetReader) pos() (int64, int64) { return r.row, 0 }

func (r *parquetReader) done() int64 {
	if r.total == 0 {
		return r.size
	}
	return r.size * r.row / r.total
}

func (r *parquetReader) Close() error {
	return r.f.Close()
}

func (r *parquetReader) next() (Record, error) {
	if r.at >= len(r.buf) {
		if cap(r.buf) == 0 {
			r.buf = make([]parquet.Row, parquetReadAhead)
		}
		n, err := r.r.ReadRows(r.buf[:cap(r.buf)])
		if n == 0 {
			if err == nil || err == io.EOF {
				return Record{}, io.EOF
			}
			return Record{}, fmt.Errorf("%w: %s row %d: %v", ErrSource, r.name, r.row+1, err)
		}
		r.buf, r.at = r.buf[:n], 0
	}
	row := r.buf[r.at]
	r.at++
	r.row++
	return r.record(row), nil
}

func (r *parquetReader) record(row parquet.Row) Record {
	rec := Record{Where: fmt.Sprintf("%s:row %d", r.name, r.row)}
	vals := make(map[int]parquet.Value, len(row))
	for _, v := range row {
		vals[v.Column()] = v
	}
	id, ok := vals[r.id]
	switch {
	case !ok || id.IsNull():
		rec.Reason = fmt.Sprintf("no id field %q", r.fields.ID)
		return rec
	case id.Kind() == parquet.Int32 || id.Kind() == parquet.Int64:
		rec.ID = strconv.FormatInt(id.Int64(), 10)
	case id.Kind() == parquet.ByteArray || id.Kind() == parquet.FixedLenByteArray:
		rec.ID = string(id.ByteArray())
	default:
		rec.Reason = fmt.Sprintf("id field %q is a %v; want a string or integer", r.fields.ID, id.Kind())
		return rec
	}
	if t, ok := vals[r.text]; ok && !t.IsNull() {
		if t.Kind() != parquet.ByteArray {
			rec.Reason = fmt.Sprintf("text field %q is a %v; want a string", r.fields.Text, t.Kind())
			return rec
		}
		rec.Text = string(t.ByteArray())
	}
	meta := map[string]json.RawMessage{}
	for k, c := range r.meta {
		v, ok := vals[c]
		if c < 0 || !ok {
			continue
		}
		j, err := parquetJSON(v)
		if err != nil {
			rec.Reason = fmt.Sprintf("field %q: %v", r.fields.Metadata[k], err)
			return rec
		}
		meta[r.fields.Metadata[k]] = j
	}
	var err error
	if rec.Metadata, err = metadataJSON(meta); err != nil {
		rec.Reason = "metadata: " + err.Error()
	}
	r.limits.check(&rec)
	return rec
}

// parquetJSON renders one Parquet value as JSON.
func parquetJSON(v parquet.Value) (json.RawMessage, error) {
	if v.IsNull() {
		return json.RawMessage("null"), nil
	}
	switch v.Kind() {
	case parquet.Boolean:
		return json.Marshal(v.Boolean())
	case parquet.Int32, parquet.Int64:
		return json.Marshal(v.Int64())
	case parquet.Float:
		return json.Marshal(v.Float())
	case parquet.Double:
		return json.Marshal(v.Double())
	case parquet.ByteArray, parquet.FixedLenByteArray:
		if !utf8.Valid(v.ByteArray()) {
			return nil, fmt.Errorf("not valid UTF-8")
		}
		return json.Marshal(string(v.ByteArray()))
	}
	return nil, fmt.Errorf("unsupported type %v", v.Kind())
}
