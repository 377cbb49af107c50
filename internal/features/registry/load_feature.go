package registry

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/embedd/embedd/internal/features/registry/rules"
)

// Parsing of one feature definition: its identity and documentation here,
// how it is computed (source, aggregation, window, time zone, expression)
// in load_how.go.

var tagRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]*$`)

const nameRule = "must match [a-z][a-z0-9_]* and be at most 64 bytes"

// defParser holds one feature definition being parsed: its fields by key,
// the Def filled so far, and ok, false once a problem was reported (the
// definition is then not added, but parsing goes on to report the rest).
type defParser struct {
	*loader
	f     *fileCtx
	label string
	fl    map[string]*yaml.Node
	d     *Def
	ok    bool
}

// need returns the value of a required key, reporting it when absent; a
// nil result (absent, or present but unusable) fails the definition.
func (p *defParser) need(key string) *yaml.Node {
	v := p.fl[key]
	if !hasKey(p.fl, key) {
		p.invalid(p.d.Pos, p.label, "%s is required", key)
	}
	if v == nil {
		p.ok = false
	}
	return v
}

func (l *loader) feature(f *fileCtx, index int, n *yaml.Node) {
	label := featureLabel(index, n)
	fl, ok := l.fields(f, n, label, "name", "version", "entity", "type", "source", "aggregation",
		"window", "expr", "timezone", "description", "owner", "tags", "sensitive", "status")
	if fl == nil {
		return
	}
	p := &defParser{loader: l, f: f, label: label, fl: fl, d: &Def{Pos: f.pos(n), Status: StatusActive}, ok: ok}
	// name and version first, so that later messages can name the feature.
	p.name()
	p.version()
	p.entity()
	p.valueType()
	p.text("description", MaxDescriptionBytes, &p.d.Description)
	p.text("owner", MaxOwnerBytes, &p.d.Owner)
	p.optional()
	if v := p.need("source"); v != nil {
		if s, good := l.str(f, label, "source", v); !good || !p.how(s, v) {
			p.ok = false
		}
	}
	if !p.ok {
		return
	}
	d := p.d
	d.Fingerprint = Fingerprint(*d)
	if l.sites == nil {
		l.sites = map[*Def]site{}
	}
	l.sites[d] = site{file: f, expr: fl["expr"]}
	l.defs = append(l.defs, d)
}

func (p *defParser) name() {
	v := p.need("name")
	if v == nil {
		return
	}
	s, good := p.str(p.f, p.label, "name", v)
	switch {
	case !good:
		p.ok = false
	case !validName(s):
		p.invalid(p.f.pos(v), p.label, "name %q %s", s, nameRule)
		p.ok = false
	case rules.IsReserved(s):
		p.invalid(p.f.pos(v), p.label, "name %q is reserved in expressions", s)
		p.ok = false
	default:
		p.d.Name = s
	}
}

func (p *defParser) version() {
	v := p.need("version")
	if v == nil {
		return
	}
	var ver int64
	if p.scalar(p.f, p.label, "version", v, "!!int", "an integer") && v.Decode(&ver) == nil && ver >= 1 && ver <= MaxVersion {
		p.d.Version = int(ver)
		return
	}
	if v.Tag == "!!int" {
		p.invalid(p.f.pos(v), p.label, "version %s out of range [1, %d]", v.Value, MaxVersion)
	}
	p.ok = false
}

func (p *defParser) entity() {
	v := p.need("entity")
	if v == nil {
		return
	}
	if s, good := p.str(p.f, p.label, "entity", v); !good {
		p.ok = false
	} else if !validName(s) {
		p.invalid(p.f.pos(v), p.label, "entity %q %s", s, nameRule)
		p.ok = false
	} else {
		p.d.Entity = s
	}
}

func (p *defParser) valueType() {
	v := p.need("type")
	if v == nil {
		return
	}
	s, good := p.str(p.f, p.label, "type", v)
	switch t := Type(s); {
	case !good:
		p.ok = false
	case t != TypeFloat && t != TypeInt && t != TypeBool:
		p.invalid(p.f.pos(v), p.label, "type %q: want float, int or bool", s)
		p.ok = false
	default:
		p.d.Type = t
	}
}

// text reads the required, non-blank text key of at most limit bytes into
// dst.
func (p *defParser) text(key string, limit int, dst *string) {
	v := p.need(key)
	if v == nil {
		return
	}
	s, good := p.str(p.f, p.label, key, v)
	switch {
	case !good:
		p.ok = false
	case strings.TrimSpace(s) == "":
		p.invalid(p.f.pos(v), p.label, "%s is empty", key)
		p.ok = false
	case len(s) > limit:
		p.invalid(p.f.pos(v), p.label, "%s is %d bytes; limit %d", key, len(s), limit)
		p.ok = false
	default:
		*dst = s
	}
}

// optional reads tags, sensitive and status, and fails the definition for
// any optional key present but unusable.
func (p *defParser) optional() {
	for _, key := range []string{"tags", "sensitive", "status", "aggregation", "window", "expr", "timezone"} {
		if hasKey(p.fl, key) && p.fl[key] == nil {
			p.ok = false
		}
	}
	if v := p.fl["tags"]; v != nil {
		if tags, good := p.tags(p.f, p.label, v); good {
			p.d.Tags = tags
		} else {
			p.ok = false
		}
	}
	if v := p.fl["sensitive"]; v != nil {
		if !p.scalar(p.f, p.label, "sensitive", v, "!!bool", "true or false") || v.Decode(&p.d.Sensitive) != nil {
			p.ok = false
		}
	}
	if v := p.fl["status"]; v != nil {
		s, good := p.str(p.f, p.label, "status", v)
		switch st := Status(s); {
		case !good:
			p.ok = false
		case st != StatusActive && st != StatusDeprecated && st != StatusRetired:
			p.invalid(p.f.pos(v), p.label, "status %q: want active, deprecated or retired", s)
			p.ok = false
		default:
			p.d.Status = st
		}
	}
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
