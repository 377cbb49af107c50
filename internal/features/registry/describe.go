package registry

import (
	"fmt"
	"slices"
	"strings"
)

const redacted = "(redacted: sensitive)"

// Describe returns a human-readable description of "name" (every version)
// or "name@version" (that version, even if retired). How a sensitive
// feature is computed (source, aggregation, window, time zone, expression,
// dependencies, description) is redacted; DescribeFull shows it.
func (r *Registry) Describe(ref string) (string, error) { return r.describe(ref, false) }

// DescribeFull is Describe without redaction, for callers entitled to see
// sensitive definitions.
func (r *Registry) DescribeFull(ref string) (string, error) { return r.describe(ref, true) }

func (r *Registry) describe(ref string, full bool) (string, error) {
	rf, err := ParseRef(ref)
	if err != nil {
		return "", err
	}
	var defs []*Def
	if rf.Version == 0 {
		defs = r.byName[rf.Name]
		if len(defs) == 0 {
			return "", fmt.Errorf("%w: %s is not defined", ErrUnknown, rf.Name)
		}
	} else {
		d, le := r.find(rf, true)
		if le != nil {
			return "", le
		}
		defs = []*Def{d}
	}
	latestDef := latest(r.byName[rf.Name])
	var b strings.Builder
	for i, d := range slices.Backward(defs) {
		if i != len(defs)-1 {
			b.WriteByte('\n')
		}
		r.describeOne(&b, d, d == latestDef, latestDef, full)
	}
	return b.String(), nil
}

func (r *Registry) describeOne(b *strings.Builder, d *Def, isLatest bool, latestDef *Def, full bool) {
	state := string(d.Status)
	switch {
	case isLatest:
		state += ", latest"
	case d.Status == StatusRetired && latestDef != nil:
		state += "; use " + latestDef.Ref().String()
	}
	fmt.Fprintf(b, "%s  [%s]\n", d.Ref(), state)
	line := func(key, value string) {
		value = strings.ReplaceAll(strings.TrimRight(value, "\n"), "\n", "\n"+strings.Repeat(" ", 16))
		fmt.Fprintf(b, "  %-13s %s\n", key+":", value)
	}
	hide := d.Sensitive && !full
	secret := func(key, value string) {
		if value == "" {
			return
		}
		if hide {
			value = redacted
		}
		line(key, value)
	}
	line("entity", d.Entity)
	line("type", string(d.Type))
	line("kind", string(d.kind))
	secret("source", d.Source)
	secret("aggregation", d.Aggregation)
	if d.Window > 0 {
		secret("window", d.Window.String())
	}
	secret("timezone", d.TimeZone)
	secret("expr", d.Expr)
	if len(d.deps) > 0 {
		deps := make([]string, len(d.deps))
		for i, dep := range d.deps {
			deps[i] = dep.Resolved.String()
		}
		secret("depends on", strings.Join(deps, ", "))
	}
	secret("description", d.Description)
	line("owner", d.Owner)
	if len(d.Tags) > 0 {
		line("tags", strings.Join(d.Tags, ", "))
	}
	line("sensitive", fmt.Sprint(d.Sensitive))
	var sets []string
	for _, s := range r.Sets() {
		if slices.Contains(s.Features, d.Ref()) {
			sets = append(sets, s.Name)
		}
	}
	if len(sets) > 0 {
		line("sets", strings.Join(sets, ", "))
	}
	var users []string
	for _, other := range r.List() {
		if slices.ContainsFunc(other.deps, func(dep Dep) bool { return dep.Resolved == d.Ref() }) {
			users = append(users, other.Ref().String())
		}
	}
	if len(users) > 0 {
		line("used by", strings.Join(users, ", "))
	}
	line("defined at", d.Pos.String())
	line("fingerprint", d.Fingerprint)
}
