package reembed

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readAll reads every record of files from at, with the position after
// each.
func readAll(t *testing.T, files []File, f Fields, l Limits, at Position) ([]Record, []Position) {
	t.Helper()
	r := NewReader(files, f, l, at)
	defer r.Close()
	var recs []Record
	var pos []Position
	for {
		rec, p, err := r.Next()
		if err == io.EOF {
			return recs, pos
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
		pos = append(pos, p)
	}
}

func expand(t *testing.T, patterns ...string) []File {
	t.Helper()
	files, err := Expand(patterns, "")
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func summarize(recs []Record) string {
	var b strings.Builder
	for _, r := range recs {
		if r.Reason != "" {
			fmt.Fprintf(&b, "%s BAD(%s)\n", filepath.Base(r.Where), r.Reason)
			continue
		}
		fmt.Fprintf(&b, "%s %s %q %s\n", filepath.Base(r.Where), r.ID, r.Text, r.Metadata)
	}
	return b.String()
}

func TestJSONL(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "a.jsonl", `{"id":"a","text":"hello","lang":"en","n":3,"x":1}
{"id":7,"text":"number id"}

{"text":"no id"}
{"id":"b"}
{"id":"c","text":""}
{"id":"d","text":5}
not json
{"id":"e","text":"bad `+"\xff"+` utf8"}
{"id":"`+strings.Repeat("x", 300)+`","text":"long id"}
{"id":"f","text":"`+strings.Repeat("y", 200)+`"}
{"id":"g","text":"last, no newline"}`)
	fields := Fields{ID: "id", Text: "text", Metadata: []string{"lang", "n", "missing"}}
	recs, pos := readAll(t, expand(t, p), fields, Limits{MaxLineBytes: 150, MaxTextBytes: 100}, Position{})
	want := `a.jsonl:1 a "hello" {"lang":"en","n":3}
a.jsonl:2 7 "number id" 
a.jsonl:4 BAD(no id field "id")
a.jsonl:5 BAD(no text field "text")
a.jsonl:6 BAD(no text (or an empty one))
a.jsonl:7 BAD(text field "text" is not a string)
a.jsonl:8 BAD(not a JSON object: invalid character 'o' in literal null (expecting 'u'))
a.jsonl:9 BAD(not valid UTF-8 (byte 22))
a.jsonl:10 BAD(line is more than 150 bytes)
a.jsonl:11 BAD(line is more than 150 bytes)
a.jsonl:12 g "last, no newline" 
`
	if got := summarize(recs); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Resuming after any record reads exactly the records after it.
	for i := range pos {
		rest, _ := readAll(t, expand(t, p), fields, Limits{MaxLineBytes: 150, MaxTextBytes: 100}, pos[i])
		if got, want := summarize(rest), summarize(recs[i+1:]); got != want {
			t.Errorf("resume after record %d (%+v): got\n%s\nwant\n%s", i, pos[i], got, want)
		}
	}
}

func TestCSV(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "b.csv", "\xef\xbb\xbfid,body,lang\n"+
		"1,\"multi\nline\",en\n"+
		"2,plain,\n"+
		"3,\"bad \"quote\",fr\n"+
		"4\n"+
		",no id,de\n"+
		"5,\"bad \xff\",en\n"+
		"6,ok,\"l\xffang\"\n"+
		"7,\"a, b\",es\n")
	fields := Fields{ID: "id", Text: "body", Metadata: []string{"lang"}}
	recs, pos := readAll(t, expand(t, p), fields, Limits{}, Position{})
	want := `b.csv:row 1 1 "multi\nline" {"lang":"en"}
b.csv:row 2 2 "plain" {"lang":""}
b.csv:row 3 BAD(not valid CSV: extraneous or missing " in quoted-field)
b.csv:row 4 BAD(no text (or an empty one))
b.csv:row 5 BAD(no id)
b.csv:row 6 BAD(text is not valid UTF-8)
b.csv:row 7 BAD(field "lang" is not valid UTF-8)
b.csv:row 8 7 "a, b" {"lang":"es"}
`
	if got := summarize(recs); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	for i := range pos {
		rest, _ := readAll(t, expand(t, p), fields, Limits{}, pos[i])
		if got, want := summarize(rest), summarize(recs[i+1:]); got != want {
			t.Errorf("resume after record %d (%+v): got\n%s\nwant\n%s", i, pos[i], got, want)
		}
	}
	if _, _, err := NewReader(expand(t, p), Fields{ID: "key", Text: "body"}, Limits{}, Position{}).Next(); !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), `no id column "key"`) {
		t.Errorf("missing column: got %v; want ErrSource naming the column", err)
	}
	// A record over the limit (an unbalanced quote) stops the job.
	q := writeFile(t, dir, "c.csv", "id,body\n1,\"open quote\n"+strings.Repeat("z,\n", 2000))
	r := NewReader(expand(t, q), fields, Limits{MaxLineBytes: 1000}, Position{})
	defer r.Close()
	if _, _, err := r.Next(); !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "c.csv:row 1") {
		t.Errorf("long record: got %v; want ErrSource at c.csv:row 1", err)
	}
}

type pqRow struct {
	ID   string  `parquet:"id"`
	Text string  `parquet:"text,optional"`
	Lang *string `parquet:"lang,optional"`
	N    int64   `parquet:"n"`
}

func TestParquet(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.parquet")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	en := "en"
	w := parquet.NewGenericWriter[pqRow](f, parquet.MaxRowsPerRowGroup(40))
	var rows []pqRow
	for i := range 100 {
		r := pqRow{ID: fmt.Sprint("p", i), Text: fmt.Sprint("text ", i), N: int64(i)}
		switch i {
		case 3:
			r.Lang = &en
		case 5:
			r.Text = ""
		case 7:
			r.Text = "bad \xff"
		}
		rows = append(rows, r)
	}
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	fields := Fields{ID: "id", Text: "text", Metadata: []string{"lang", "n"}}
	recs, pos := readAll(t, expand(t, p), fields, Limits{}, Position{})
	if len(recs) != 100 {
		t.Fatalf("got %d records; want 100", len(recs))
	}
	for i, want := range map[int]string{
		0: `c.parquet:row 1 p0 "text 0" {"lang":null,"n":0}` + "\n",
		3: `c.parquet:row 4 p3 "text 3" {"lang":"en","n":3}` + "\n",
		5: "c.parquet:row 6 BAD(no text (or an empty one))\n",
		7: "c.parquet:row 8 BAD(text is not valid UTF-8)\n",
	} {
		if got := summarize(recs[i : i+1]); got != want {
			t.Errorf("record %d: got %s; want %s", i, got, want)
		}
	}
	for _, i := range []int{0, 39, 40, 41, 98} { // across row groups
		rest, _ := readAll(t, expand(t, p), fields, Limits{}, pos[i])
		if got, want := summarize(rest), summarize(recs[i+1:]); got != want {
			t.Errorf("resume after row %d: got %d records, first %q; want %d", i, len(rest), got[:min(len(got), 60)], len(recs)-i-1)
		}
	}
	if _, _, err := NewReader(expand(t, p), Fields{ID: "id", Text: "body"}, Limits{}, Position{}).Next(); !errors.Is(err, ErrSource) {
		t.Errorf("missing column: got %v; want ErrSource", err)
	}
}

// TestExpand: globs sorted by path across patterns, duplicates removed,
// formats by extension, several files read in order.
func TestExpand(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "b.jsonl", `{"id":"b1","text":"x"}`+"\n")
	writeFile(t, dir, "a.jsonl", `{"id":"a1","text":"x"}`+"\n"+`{"id":"a2","text":"y"}`+"\n")
	writeFile(t, dir, "c.csv", "id,text\nc1,z\n")
	files, err := Expand([]string{filepath.Join(dir, "*.jsonl"), filepath.Join(dir, "c.csv"), filepath.Join(dir, "a.jsonl")}, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f.Path)+"/"+f.Format)
	}
	if got := strings.Join(names, " "); got != "a.jsonl/jsonl b.jsonl/jsonl c.csv/csv" {
		t.Errorf("got %s", got)
	}
	recs, pos := readAll(t, files, Fields{ID: "id", Text: "text"}, Limits{}, Position{})
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	if got := strings.Join(ids, ","); got != "a1,a2,b1,c1" {
		t.Errorf("got %s; want a1,a2,b1,c1", got)
	}
	if rest, _ := readAll(t, files, Fields{ID: "id", Text: "text"}, Limits{}, pos[1]); len(rest) != 2 || rest[0].ID != "b1" {
		t.Errorf("resume at the end of a file: got %v", rest)
	}
	for _, bad := range [][]string{{filepath.Join(dir, "none*.jsonl")}, {writeFile(t, dir, "x.txt", "")}} {
		if _, err := Expand(bad, ""); !errors.Is(err, ErrSource) {
			t.Errorf("%v: got %v; want ErrSource", bad, err)
		}
	}
}

func TestShard(t *testing.T) {
	for _, s := range []string{"0/1", "3/4", "4095/4096"} {
		if _, err := ParseShard(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"", "4", "4/4", "-1/4", "0/0", "a/b", "0/5000"} {
		if _, err := ParseShard(s); err == nil {
			t.Errorf("%q: got no error", s)
		}
	}
	// Every id has exactly one owner; the partition is fixed (golden
	// values: changing the hash would reassign the ids of running jobs).
	counts := make([]int, 4)
	for i := range 10000 {
		id := fmt.Sprint("id-", i)
		owners := 0
		for k := range 4 {
			if (Shard{k, 4}).Owns(id) {
				owners++
				counts[k]++
			}
		}
		if owners != 1 {
			t.Fatalf("%s has %d owners", id, owners)
		}
	}
	for k, c := range counts {
		if c < 2300 || c > 2700 {
			t.Errorf("shard %d owns %d of 10000 ids; want about 2500", k, c)
		}
	}
	var got []int
	for _, id := range []string{"a", "b", "doc-1", "doc-2", "42"} {
		for k := range 4 {
			if (Shard{k, 4}).Owns(id) {
				got = append(got, k)
			}
		}
	}
	if fmt.Sprint(got) != goldenOwners {
		t.Errorf("owners of a, b, doc-1, doc-2, 42 among 4: got %v; want %s", got, goldenOwners)
	}
}

const goldenOwners = "[0 1 3 2 3]"
