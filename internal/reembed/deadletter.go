package reembed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// deadLine is one line of the dead-letter file.
type deadLine struct {
	Position string `json:"position"`
	ID       string `json:"id,omitempty"`
	Reason   string `json:"reason"`
	ord      int    // the record's number in its batch (order of the lines)
}

// deadLetter appends bad records to a JSONL file, fsynced before the
// checkpoint that covers them; size is its length at the last write.
type deadLetter struct {
	f    *os.File
	path string
	size int64
}

// openDeadLetter opens path for appending after truncating it to size (what
// the checkpoint covers): lines written after the checkpoint are written
// again by the resumed job.
func openDeadLetter(path string, size int64) (*deadLetter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dead-letter file: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() > size {
		err = f.Truncate(size)
	}
	if err == nil && st.Size() < size {
		size = st.Size() // removed or cut by hand: append after what is there
	}
	if err == nil {
		_, err = f.Seek(size, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dead-letter file %s: %w", path, err)
	}
	return &deadLetter{f: f, path: path, size: size}, nil
}

func (d *deadLetter) write(lines []deadLine) error {
	if len(lines) == 0 {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	n, err := d.f.Write(buf.Bytes())
	if err != nil {
		return fmt.Errorf("dead-letter file %s: %w", d.path, err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("dead-letter file %s: %w", d.path, err)
	}
	d.size += int64(n)
	return nil
}

func (d *deadLetter) Close() error { return d.f.Close() }
