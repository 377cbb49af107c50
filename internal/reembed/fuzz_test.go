package reembed

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/embedd/embedd/internal/store"
)

// FuzzSources: any bytes read as JSONL or CSV give records that are bad
// (with a reason) or good (a valid id, a non-empty UTF-8 text within the
// limit, metadata within the data model's bound), at positions that only
// move forward; resuming after the first record reads the same rest.
func FuzzSources(f *testing.F) {
	f.Add([]byte(`{"id":"a","text":"x","m":1}` + "\n" + `{"id":2,"text":"y"}`))
	f.Add([]byte("id,text,m\n1,\"a\nb\",x\n2,\"bad\"q\",y\n"))
	f.Add([]byte("{\"id\":\"\xff\",\"text\":\"t\"}\n\n\n{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		for _, name := range []string{"f.jsonl", "f.csv"} {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			files, err := Expand([]string{p}, "")
			if err != nil {
				t.Fatal(err)
			}
			fields, limits := Fields{ID: "id", Text: "text", Metadata: []string{"m"}}, Limits{MaxLineBytes: 256, MaxTextBytes: 64}
			recs, pos, err := readSome(files, fields, limits, Position{})
			if err != nil {
				continue // a source error (a CSV without the columns): the job stops
			}
			last := Position{}
			for i, r := range recs {
				if r.Reason == "" && (store.CheckID(r.ID) != nil || r.Text == "" || len(r.Text) > 64 || !utf8.ValidString(r.Text) || store.CheckMetadata(r.Metadata) != nil) {
					t.Fatalf("%s: good record %+v breaks the limits", name, r)
				}
				if pos[i].Offset < last.Offset || pos[i].Record <= last.Record {
					t.Fatalf("%s: position %+v after %+v", name, pos[i], last)
				}
				last = pos[i]
			}
			if len(recs) > 1 {
				rest, _, err := readSome(files, fields, limits, pos[0])
				if err != nil || len(rest) != len(recs)-1 {
					t.Fatalf("%s: resume after %+v: %d records, %v; want %d", name, pos[0], len(rest), err, len(recs)-1)
				}
			}
		}
	})
}

func readSome(files []File, f Fields, l Limits, at Position) ([]Record, []Position, error) {
	r := NewReader(files, f, l, at)
	defer r.Close()
	var recs []Record
	var pos []Position
	for {
		rec, p, err := r.Next()
		if err == io.EOF {
			return recs, pos, nil
		}
		if err != nil {
			return recs, pos, err
		}
		recs, pos = append(recs, rec), append(pos, p)
	}
}
