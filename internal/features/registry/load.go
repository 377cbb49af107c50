package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// File is one registry file: its name (used in error positions) and its
// YAML content.
type File struct {
	Name string
	Data []byte
}

// LoadFS loads every *.yaml and *.yml file under fsys (subdirectories
// included), in lexical order of their paths.
func LoadFS(fsys fs.FS) (*Registry, error) {
	files, err := readFS(fsys, "")
	if err != nil {
		return nil, err
	}
	return Load(files...)
}

// LoadDir loads the registry files under dir like LoadFS; positions name
// the files by dir joined with their path.
func LoadDir(dir string) (*Registry, error) {
	files, err := readFS(os.DirFS(dir), dir)
	if err != nil {
		return nil, err
	}
	return Load(files...)
}

func readFS(fsys fs.FS, prefix string) ([]File, error) {
	var files []File
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (path.Ext(p) != ".yaml" && path.Ext(p) != ".yml") {
			return nil
		}
		if len(files) == MaxFiles {
			return fmt.Errorf("%w: more than %d registry files", ErrLimit, MaxFiles)
		}
		name := p
		if prefix != "" {
			name = filepath.Join(prefix, filepath.FromSlash(p))
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > MaxFileBytes {
			return fmt.Errorf("%w: %s is %d bytes; limit %d", ErrLimit, name, info.Size(), MaxFileBytes)
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, File{Name: name, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: read files: %w", err)
	}
	return files, nil // WalkDir visits in lexical order
}

// Load parses, validates and links files into a Registry. On failure it
// returns every problem found (up to MaxErrors), each an *Error, joined
// with errors.Join.
func Load(files ...File) (*Registry, error) {
	l := &loader{}
	if len(files) > MaxFiles {
		return nil, fmt.Errorf("%w: %d registry files; limit %d", ErrLimit, len(files), MaxFiles)
	}
	for _, f := range files {
		l.file(f)
	}
	var r *Registry
	if len(l.errs) == 0 {
		r = l.link()
	}
	if len(l.errs) > 0 {
		errs := l.errs
		if l.dropped > 0 {
			errs = append(slices.Clip(errs), fmt.Errorf("registry: %d more errors not shown", l.dropped))
		}
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// fileCtx is the file being parsed.
type fileCtx struct {
	name  string
	lines []string
}

func (f *fileCtx) pos(n *yaml.Node) Pos { return Pos{File: f.name, Line: n.Line, Col: n.Column} }

// site is where a definition's parts are in its file, for link-time errors.
type site struct {
	file *fileCtx
	expr *yaml.Node
}

type setItem struct {
	ref Ref
	pos Pos
}

type rawSet struct {
	set   FeatureSet
	items []setItem
}

type loader struct {
	errs    []error
	dropped int
	defs    []*Def
	sites   map[*Def]site
	sets    []*rawSet
}

func (l *loader) add(pos Pos, err error) {
	if len(l.errs) >= MaxErrors {
		l.dropped++
		return
	}
	l.errs = append(l.errs, &Error{Pos: pos, Err: err})
}

func (l *loader) invalid(pos Pos, label, format string, args ...any) {
	l.add(pos, fmt.Errorf("%w: %s: %s", ErrInvalid, label, fmt.Sprintf(format, args...)))
}

func (l *loader) file(in File) {
	f := &fileCtx{name: in.Name}
	if len(in.Data) > MaxFileBytes {
		l.add(Pos{File: f.name}, fmt.Errorf("%w: file is %d bytes; limit %d", ErrLimit, len(in.Data), MaxFileBytes))
		return
	}
	if !utf8.Valid(in.Data) {
		l.add(Pos{File: f.name}, fmt.Errorf("%w: file is not valid UTF-8", ErrInvalid))
		return
	}
	f.lines = strings.Split(string(in.Data), "\n")
	dec := yaml.NewDecoder(bytes.NewReader(in.Data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			return
		}
		if err != nil {
			// The YAML parser's line numbers are sometimes those of the
			// enclosing construct, so its message is kept as it is rather
			// than turned into a position.
			l.add(Pos{File: f.name}, fmt.Errorf("%w: %v", ErrInvalid, err))
			return
		}
		if len(doc.Content) == 0 {
			continue
		}
		l.document(f, doc.Content[0])
	}
}

func hasKey(m map[string]*yaml.Node, key string) bool {
	_, ok := m[key]
	return ok
}

// fields returns the values of mapping n by key, reporting a non-mapping,
// aliases, duplicate keys and keys not in allowed.
func (l *loader) fields(f *fileCtx, n *yaml.Node, label string, allowed ...string) (map[string]*yaml.Node, bool) {
	if n.Kind == yaml.AliasNode {
		l.invalid(f.pos(n), label, "YAML aliases are not supported")
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		l.invalid(f.pos(n), label, "want a mapping")
		return nil, false
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			l.invalid(f.pos(k), label, "keys must be plain strings")
			ok = false
			continue
		}
		switch {
		case !slices.Contains(allowed, k.Value):
			l.invalid(f.pos(k), label, "unknown key %q (known: %s)", k.Value, strings.Join(allowed, ", "))
			ok = false
			continue
		case hasKey(out, k.Value):
			l.invalid(f.pos(k), label, "key %q repeated", k.Value)
			ok = false
			continue
		case v.Kind == yaml.AliasNode:
			l.invalid(f.pos(v), label, "%s: YAML aliases are not supported", k.Value)
			ok = false
			out[k.Value] = nil // present but unusable: not reported again as missing
			continue
		}
		out[k.Value] = v
	}
	return out, ok
}

func (l *loader) document(f *fileCtx, n *yaml.Node) {
	top, _ := l.fields(f, n, "document", "features", "sets")
	if top == nil {
		return
	}
	if v := top["features"]; v != nil {
		if v.Kind != yaml.SequenceNode {
			l.invalid(f.pos(v), "features", "want a list of feature definitions")
		} else {
			for i, item := range v.Content {
				l.feature(f, i, item)
			}
		}
	}
	if v := top["sets"]; v != nil {
		if v.Kind != yaml.SequenceNode {
			l.invalid(f.pos(v), "sets", "want a list of feature sets")
		} else {
			for i, item := range v.Content {
				l.set(f, i, item)
			}
		}
	}
}

// scalar checks that v is a scalar with the YAML tag tag (e.g. "!!str").
func (l *loader) scalar(f *fileCtx, label, key string, v *yaml.Node, tag, want string) bool {
	if v.Kind != yaml.ScalarNode || v.Tag != tag {
		l.invalid(f.pos(v), label, "%s must be %s", key, want)
		return false
	}
	return true
}

func (l *loader) str(f *fileCtx, label, key string, v *yaml.Node) (string, bool) {
	if !l.scalar(f, label, key, v, "!!str", "a string") {
		return "", false
	}
	return v.Value, true
}
