package registry

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

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
