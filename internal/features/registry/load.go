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
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/embedd/embedd/internal/features/registry/rules"
	"github.com/embedd/embedd/internal/features/registry/temporal"
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

var tagRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]*$`)

const nameRule = "must match [a-z][a-z0-9_]* and be at most 64 bytes"

func (l *loader) feature(f *fileCtx, index int, n *yaml.Node) {
	label := featureLabel(index, n)
	fl, ok := l.fields(f, n, label, "name", "version", "entity", "type", "source", "aggregation",
		"window", "expr", "timezone", "description", "owner", "tags", "sensitive", "status")
	if fl == nil {
		return
	}
	d := &Def{Pos: f.pos(n), Status: StatusActive}
	need := func(key string) *yaml.Node {
		v := fl[key]
		if !hasKey(fl, key) {
			l.invalid(d.Pos, label, "%s is required", key)
		}
		if v == nil {
			ok = false
		}
		return v
	}
	// name and version first, so that later messages can name the feature.
	if v := need("name"); v != nil {
		if s, good := l.str(f, label, "name", v); good {
			switch {
			case !validName(s):
				l.invalid(f.pos(v), label, "name %q %s", s, nameRule)
				ok = false
			case rules.IsReserved(s):
				l.invalid(f.pos(v), label, "name %q is reserved in expressions", s)
				ok = false
			default:
				d.Name = s
			}
		} else {
			ok = false
		}
	}
	if v := need("version"); v != nil {
		var ver int64
		if l.scalar(f, label, "version", v, "!!int", "an integer") && v.Decode(&ver) == nil && ver >= 1 && ver <= MaxVersion {
			d.Version = int(ver)
		} else {
			if v.Tag == "!!int" {
				l.invalid(f.pos(v), label, "version %s out of range [1, %d]", v.Value, MaxVersion)
			}
			ok = false
		}
	}
	if v := need("entity"); v != nil {
		if s, good := l.str(f, label, "entity", v); !good {
			ok = false
		} else if !validName(s) {
			l.invalid(f.pos(v), label, "entity %q %s", s, nameRule)
			ok = false
		} else {
			d.Entity = s
		}
	}
	if v := need("type"); v != nil {
		s, good := l.str(f, label, "type", v)
		switch t := Type(s); {
		case !good:
			ok = false
		case t != TypeFloat && t != TypeInt && t != TypeBool:
			l.invalid(f.pos(v), label, "type %q: want float, int or bool", s)
			ok = false
		default:
			d.Type = t
		}
	}
	for _, key := range []string{"description", "owner"} {
		v := need(key)
		if v == nil {
			continue
		}
		s, good := l.str(f, label, key, v)
		limit := MaxDescriptionBytes
		if key == "owner" {
			limit = MaxOwnerBytes
		}
		switch {
		case !good:
			ok = false
		case strings.TrimSpace(s) == "":
			l.invalid(f.pos(v), label, "%s is empty", key)
			ok = false
		case len(s) > limit:
			l.invalid(f.pos(v), label, "%s is %d bytes; limit %d", key, len(s), limit)
			ok = false
		case key == "owner":
			d.Owner = s
		default:
			d.Description = s
		}
	}
	for _, key := range []string{"tags", "sensitive", "status", "aggregation", "window", "expr", "timezone"} {
		if hasKey(fl, key) && fl[key] == nil {
			ok = false
		}
	}
	if v := fl["tags"]; v != nil {
		if tags, good := l.tags(f, label, v); good {
			d.Tags = tags
		} else {
			ok = false
		}
	}
	if v := fl["sensitive"]; v != nil {
		if !l.scalar(f, label, "sensitive", v, "!!bool", "true or false") || v.Decode(&d.Sensitive) != nil {
			ok = false
		}
	}
	if v := fl["status"]; v != nil {
		s, good := l.str(f, label, "status", v)
		switch st := Status(s); {
		case !good:
			ok = false
		case st != StatusActive && st != StatusDeprecated && st != StatusRetired:
			l.invalid(f.pos(v), label, "status %q: want active, deprecated or retired", s)
			ok = false
		default:
			d.Status = st
		}
	}
	if v := need("source"); v != nil {
		if s, good := l.str(f, label, "source", v); !good {
			ok = false
		} else if !l.how(f, d, label, s, v, fl) {
			ok = false
		}
	}
	if !ok {
		return
	}
	d.Fingerprint = Fingerprint(*d)
	if l.sites == nil {
		l.sites = map[*Def]site{}
	}
	l.sites[d] = site{file: f, expr: fl["expr"]}
	l.defs = append(l.defs, d)
}

// featureLabel names a feature definition in messages: "feature x@2" when
// its name and version are valid, else "features[i]".
func featureLabel(index int, n *yaml.Node) string {
	var name, version string
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch k, v := n.Content[i], n.Content[i+1]; {
			case k.Value == "name" && v.Kind == yaml.ScalarNode && v.Tag == "!!str" && validName(v.Value):
				name = v.Value
			case k.Value == "version" && v.Kind == yaml.ScalarNode && v.Tag == "!!int":
				version = v.Value
			}
		}
	}
	if ref, err := ParseRef(name + "@" + version); err == nil {
		return "feature " + ref.String()
	}
	return fmt.Sprintf("features[%d]", index)
}

func (l *loader) tags(f *fileCtx, label string, v *yaml.Node) ([]string, bool) {
	if v.Kind != yaml.SequenceNode {
		l.invalid(f.pos(v), label, "tags must be a list of strings")
		return nil, false
	}
	if len(v.Content) > MaxTags {
		l.invalid(f.pos(v), label, "%d tags; limit %d", len(v.Content), MaxTags)
		return nil, false
	}
	var tags []string
	for i, t := range v.Content {
		key := fmt.Sprintf("tags[%d]", i)
		s, good := l.str(f, label, key, t)
		switch {
		case !good:
			return nil, false
		case len(s) > MaxTagBytes || !tagRE.MatchString(s):
			l.invalid(f.pos(t), label, "%s %q must match %s and be at most %d bytes", key, s, tagRE, MaxTagBytes)
			return nil, false
		case slices.Contains(tags, s):
			l.invalid(f.pos(t), label, "%s %q repeated", key, s)
			return nil, false
		}
		tags = append(tags, s)
	}
	return tags, true
}

// how validates source, aggregation, window, expr and timezone together,
// and the type against them.
func (l *loader) how(f *fileCtx, d *Def, label, source string, sv *yaml.Node, fl map[string]*yaml.Node) bool {
	switch source {
	case SourceSession:
		d.kind = KindSession
	case SourceTemporal:
		d.kind = KindTemporal
	case SourceRule:
		d.kind = KindRule
	case SourceExternal:
		d.kind = KindExternal
	default:
		if !validName(source) {
			l.invalid(f.pos(sv), label, "source %q: want events, session, temporal, rule, external or the name of an event value", source)
			return false
		}
		d.kind = KindWindow
	}
	d.Source = source
	ok := true
	forbid := func(key, why string) {
		if v := fl[key]; v != nil {
			l.invalid(f.pos(v), label, "%s is not allowed %s", key, why)
		}
		if hasKey(fl, key) {
			ok = false
		}
	}
	// Aggregation.
	aggNode := fl["aggregation"]
	switch d.kind {
	case KindRule, KindExternal:
		forbid("aggregation", "for source "+source)
	default:
		if aggNode == nil {
			if !hasKey(fl, "aggregation") {
				l.invalid(d.Pos, label, "aggregation is required for source %s (one of %s)", source, aggregationsOf(d.kind, source))
			}
			return false
		}
		agg, good := l.str(f, label, "aggregation", aggNode)
		if !good {
			return false
		}
		t, known := aggregationType(d.kind, agg)
		if !known || (source == SourceEvents && agg != AggCount) {
			l.invalid(f.pos(aggNode), label, "aggregation %q for source %s: want one of %s", agg, source, aggregationsOf(d.kind, source))
			return false
		}
		d.Aggregation = agg
		if d.Type != "" && d.Type != t {
			l.invalid(f.pos(fl["type"]), label, "type %s does not fit aggregation %s, which is %s", d.Type, agg, t)
			ok = false
		}
	}
	// Window.
	if d.kind == KindWindow {
		v := fl["window"]
		if v == nil {
			if !hasKey(fl, "window") {
				l.invalid(d.Pos, label, "window is required for aggregation %s", d.Aggregation)
			}
			return false
		}
		s, good := l.str(f, label, "window", v)
		if !good {
			return false
		}
		w, err := time.ParseDuration(s)
		switch {
		case err != nil:
			l.invalid(f.pos(v), label, "window %q is not a duration such as 30s, 5m or 1h", s)
			ok = false
		case w <= 0 || w > MaxWindow:
			l.invalid(f.pos(v), label, "window %s out of range (0, %s]", w, MaxWindow)
			ok = false
		case w%time.Second != 0:
			l.invalid(f.pos(v), label, "window %s is not a whole number of seconds", w)
			ok = false
		default:
			d.Window = w
		}
	} else {
		forbid("window", "for source "+source)
	}
	// Time zone.
	if d.Aggregation == TemporalHourOfDay || d.Aggregation == TemporalDayOfWeek {
		d.TimeZone = DefaultTimeZone
		if hasKey(fl, "timezone") && fl["timezone"] == nil {
			return false
		}
		if v := fl["timezone"]; v != nil {
			s, good := l.str(f, label, "timezone", v)
			if !good {
				return false
			}
			d.TimeZone = s
		}
		loc, err := temporal.LoadLocation(d.TimeZone)
		if err != nil {
			l.invalid(f.pos(fl["timezone"]), label, "%v", err)
			return false
		}
		d.loc = loc
	} else {
		forbid("timezone", "except for hour_of_day and day_of_week")
	}
	// Expression.
	if d.kind == KindRule {
		v := fl["expr"]
		if v == nil {
			if !hasKey(fl, "expr") {
				l.invalid(d.Pos, label, "expr is required for source rule")
			}
			return false
		}
		s, good := l.str(f, label, "expr", v)
		if !good {
			return false
		}
		if d.Type == TypeInt {
			l.invalid(f.pos(fl["type"]), label, "a rule's type is float or bool")
			ok = false
		}
		e, err := rules.Parse(s)
		if err != nil {
			var re *rules.Error
			errors.As(err, &re)
			l.add(exprPos(f, v, re.Line, re.Col), fmt.Errorf("%w: %s: expr: %w", ErrInvalid, label, err))
			return false
		}
		d.Expr, d.expr = s, e
	} else {
		forbid("expr", "for source "+source)
	}
	return ok
}

// exprPos maps a position inside the expression held by node v to a file
// position. Where the mapping cannot be proven from the file's text
// (escapes, folded scalars) it returns the position of the value.
func exprPos(f *fileCtx, v *yaml.Node, line, col int) Pos {
	fallback := f.pos(v)
	exprLines := strings.Split(v.Value, "\n")
	if line < 1 || line > len(exprLines) {
		return fallback
	}
	want := exprLines[line-1]
	switch v.Style {
	case 0, yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		if line != 1 || len(exprLines) != 1 || v.Line < 1 || v.Line > len(f.lines) {
			return fallback
		}
		start := v.Column // 1-based column of the first character of the value
		if v.Style != 0 {
			start++
		}
		text := []rune(strings.TrimSuffix(f.lines[v.Line-1], "\r"))
		if start-1 > len(text) || !strings.HasPrefix(string(text[start-1:]), want) {
			return fallback
		}
		return Pos{File: f.name, Line: v.Line, Col: start + col - 1}
	case yaml.LiteralStyle:
		fileLine := v.Line + line // content starts on the line after "|"
		if fileLine > len(f.lines) {
			return fallback
		}
		text := strings.TrimSuffix(f.lines[fileLine-1], "\r")
		indent, found := strings.CutSuffix(text, want)
		if !found || strings.TrimLeft(indent, " ") != "" {
			return fallback
		}
		return Pos{File: f.name, Line: fileLine, Col: utf8.RuneCountInString(indent) + col}
	}
	return fallback
}

// exprAt describes a position inside an expression.
func exprAt(line, col int) string {
	if line == 1 {
		return fmt.Sprintf("expression column %d", col)
	}
	return fmt.Sprintf("expression line %d column %d", line, col)
}

func (l *loader) set(f *fileCtx, index int, n *yaml.Node) {
	label := fmt.Sprintf("sets[%d]", index)
	fl, ok := l.fields(f, n, label, "name", "description", "features")
	if fl == nil {
		return
	}
	rs := &rawSet{set: FeatureSet{Pos: f.pos(n)}}
	if v := fl["name"]; v == nil {
		l.invalid(rs.set.Pos, label, "name is required")
		ok = false
	} else if s, good := l.str(f, label, "name", v); !good {
		ok = false
	} else if !validName(s) {
		l.invalid(f.pos(v), label, "name %q %s", s, nameRule)
		ok = false
	} else {
		rs.set.Name = s
		label = "set " + s
	}
	if v := fl["description"]; v != nil {
		if s, good := l.str(f, label, "description", v); !good {
			ok = false
		} else if len(s) > MaxDescriptionBytes {
			l.invalid(f.pos(v), label, "description is %d bytes; limit %d", len(s), MaxDescriptionBytes)
			ok = false
		} else {
			rs.set.Description = s
		}
	}
	v := fl["features"]
	switch {
	case v == nil:
		l.invalid(rs.set.Pos, label, "features is required")
		return
	case v.Kind != yaml.SequenceNode || len(v.Content) == 0:
		l.invalid(f.pos(v), label, "features must be a non-empty list of feature references")
		return
	case len(v.Content) > MaxSetSize:
		l.invalid(f.pos(v), label, "%d features; limit %d", len(v.Content), MaxSetSize)
		return
	}
	for i, item := range v.Content {
		key := fmt.Sprintf("features[%d]", i)
		s, good := l.str(f, label, key, item)
		if !good {
			ok = false
			continue
		}
		ref, msg := parseRef(s)
		if msg != "" {
			l.invalid(f.pos(item), label, "%s: %s", key, msg)
			ok = false
			continue
		}
		rs.items = append(rs.items, setItem{ref: ref, pos: f.pos(item)})
	}
	if ok {
		l.sets = append(l.sets, rs)
	}
}
