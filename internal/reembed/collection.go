package reembed

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/embedd/embedd/internal/fsutil"
	"github.com/embedd/embedd/internal/store"
)

// A collection source: the records of a stored version, their text taken
// from a metadata key. ScanVersion visits records in no particular order,
// and a job must not write the store while a scan holds it, so the shard's
// records are first exported to a file in the state directory (written
// atomically, kept across restarts); the job then reads that file like a
// JSONL source, with the same checkpoints.

// FormatExport is the format of a collection source's export file.
const FormatExport = "export"

// exportLine is one exported record.
type exportLine struct {
	ID       string          `json:"id"`
	Text     *string         `json:"text,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Where    string          `json:"where"`
	Reason   string          `json:"reason,omitempty"`
}

// sourceVersion resolves the source collection's version: FromVersion, or
// the live one.
func (j *job) sourceVersion(ctx context.Context) (string, error) {
	if j.o.FromVersion != "" {
		return j.o.FromVersion, nil
	}
	vs, err := j.t.Versions(ctx, j.o.FromCollection)
	if err != nil {
		return "", fmt.Errorf("versions of source collection %q: %w", j.o.FromCollection, err)
	}
	for _, v := range vs {
		if v.Live {
			return v.Version, nil
		}
	}
	return "", fmt.Errorf("%w: source collection %q has no live version", ErrSource, j.o.FromCollection)
}

// sourceFiles returns the job's files, exporting a collection source first
// if its export does not exist yet.
func (j *job) sourceFiles(ctx context.Context) ([]File, error) {
	if j.o.FromCollection == "" {
		return j.o.Files, nil
	}
	path := j.sd.export(j.o.Shard)
	st, err := os.Stat(path)
	if err != nil {
		if err := j.export(ctx, path); err != nil {
			return nil, err
		}
		if st, err = os.Stat(path); err != nil {
			return nil, err
		}
	}
	return []File{{Path: path, Format: FormatExport, Size: st.Size(), ModTime: st.ModTime().UnixNano()}}, nil
}

func (j *job) export(ctx context.Context, path string) error {
	n := 0
	err := fsutil.WriteAtomic(path, 0o644, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		err := j.t.ScanVersion(ctx, j.o.FromCollection, j.js.SourceVersion, func(r store.Record) error {
			if !j.o.Shard.Owns(r.ID) {
				return nil
			}
			n++
			return enc.Encode(j.exportRecord(r))
		})
		if err != nil {
			return fmt.Errorf("scan %s@%s: %w", j.o.FromCollection, j.js.SourceVersion, err)
		}
		return bw.Flush()
	})
	if err == nil {
		j.o.Logger.Info("reembed: source collection exported", "collection", j.o.FromCollection, "version", j.js.SourceVersion, "records", n, "file", path)
	}
	return err
}

func (j *job) exportRecord(r store.Record) exportLine {
	l := exportLine{ID: r.ID, Metadata: r.Metadata, Where: fmt.Sprintf("%s@%s id %q", j.o.FromCollection, j.js.SourceVersion, r.ID)}
	var meta map[string]json.RawMessage
	if json.Unmarshal(r.Metadata, &meta) == nil {
		var text string
		if raw, ok := meta[j.o.Fields.Text]; ok && json.Unmarshal(raw, &text) == nil {
			l.Text = &text
		}
	}
	if l.Text == nil {
		l.Reason = fmt.Sprintf("no text in metadata key %q", j.o.Fields.Text)
	}
	if len(l.Metadata) == 0 {
		l.Metadata = nil
	}
	return l
}

// fromExport maps one export line to a record.
func (f Fields) fromExport(where string, line []byte) Record {
	var l exportLine
	if err := json.Unmarshal(line, &l); err != nil {
		return Record{Where: where, Reason: "export line: " + err.Error()}
	}
	rec := Record{Where: l.Where, ID: l.ID, Metadata: l.Metadata, Reason: l.Reason}
	if l.Text != nil {
		rec.Text = *l.Text
	}
	return rec
}
