package registry

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/embedd/embedd/internal/features/registry/rules"
	"github.com/embedd/embedd/internal/features/registry/temporal"
)

// how validates source, aggregation, window, expr and timezone together,
// and the type against them. It returns false at the first problem that
// makes the later checks meaningless; others set p.ok to false and go on.
func (p *defParser) how(source string, sv *yaml.Node) bool {
	d := p.d
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
			p.invalid(p.f.pos(sv), p.label, "source %q: want events, session, temporal, rule, external or the name of an event value", source)
			return false
		}
		d.kind = KindWindow
	}
	d.Source = source
	return p.aggregation() && p.window() && p.timeZone() && p.expr()
}

// forbid reports key, present where it is not allowed.
func (p *defParser) forbid(key, why string) {
	if v := p.fl[key]; v != nil {
		p.invalid(p.f.pos(v), p.label, "%s is not allowed %s", key, why)
	}
	if hasKey(p.fl, key) {
		p.ok = false
	}
}

// present returns the value of key, which the definition's kind requires
// (reporting it when absent, as "key is required" + why); nil fails.
func (p *defParser) present(key, why string) *yaml.Node {
	v := p.fl[key]
	if v == nil && !hasKey(p.fl, key) {
		p.invalid(p.d.Pos, p.label, "%s is required %s", key, why)
	}
	return v
}

func (p *defParser) aggregation() bool {
	d, source := p.d, p.d.Source
	if d.kind == KindRule || d.kind == KindExternal {
		p.forbid("aggregation", "for source "+source)
		return true
	}
	v := p.present("aggregation", fmt.Sprintf("for source %s (one of %s)", source, aggregationsOf(d.kind, source)))
	if v == nil {
		return false
	}
	agg, good := p.str(p.f, p.label, "aggregation", v)
	if !good {
		return false
	}
	t, known := aggregationType(d.kind, agg)
	if !known || (source == SourceEvents && agg != AggCount) {
		p.invalid(p.f.pos(v), p.label, "aggregation %q for source %s: want one of %s", agg, source, aggregationsOf(d.kind, source))
		return false
	}
	d.Aggregation = agg
	if d.Type != "" && d.Type != t {
		p.invalid(p.f.pos(p.fl["type"]), p.label, "type %s does not fit aggregation %s, which is %s", d.Type, agg, t)
		p.ok = false
	}
	return true
}

func (p *defParser) window() bool {
	d := p.d
	if d.kind != KindWindow {
		p.forbid("window", "for source "+d.Source)
		return true
	}
	v := p.present("window", "for aggregation "+d.Aggregation)
	if v == nil {
		return false
	}
	s, good := p.str(p.f, p.label, "window", v)
	if !good {
		return false
	}
	w, err := time.ParseDuration(s)
	switch {
	case err != nil:
		p.invalid(p.f.pos(v), p.label, "window %q is not a duration such as 30s, 5m or 1h", s)
		p.ok = false
	case w <= 0 || w > MaxWindow:
		p.invalid(p.f.pos(v), p.label, "window %s out of range (0, %s]", w, MaxWindow)
		p.ok = false
	case w%time.Second != 0:
		p.invalid(p.f.pos(v), p.label, "window %s is not a whole number of seconds", w)
		p.ok = false
	default:
		d.Window = w
	}
	return true
}

func (p *defParser) timeZone() bool {
	d := p.d
	if d.Aggregation != TemporalHourOfDay && d.Aggregation != TemporalDayOfWeek {
		p.forbid("timezone", "except for hour_of_day and day_of_week")
		return true
	}
	d.TimeZone = DefaultTimeZone
	if hasKey(p.fl, "timezone") && p.fl["timezone"] == nil {
		return false
	}
	if v := p.fl["timezone"]; v != nil {
		s, good := p.str(p.f, p.label, "timezone", v)
		if !good {
			return false
		}
		d.TimeZone = s
	}
	loc, err := temporal.LoadLocation(d.TimeZone)
	if err != nil {
		p.invalid(p.f.pos(p.fl["timezone"]), p.label, "%v", err)
		return false
	}
	d.loc = loc
	return true
}

func (p *defParser) expr() bool {
	d := p.d
	if d.kind != KindRule {
		p.forbid("expr", "for source "+d.Source)
		return true
	}
	v := p.present("expr", "for source rule")
	if v == nil {
		return false
	}
	s, good := p.str(p.f, p.label, "expr", v)
	if !good {
		return false
	}
	if d.Type == TypeInt {
		p.invalid(p.f.pos(p.fl["type"]), p.label, "a rule's type is float or bool")
		p.ok = false
	}
	e, err := rules.Parse(s)
	if err != nil {
		var re *rules.Error
		errors.As(err, &re)
		p.add(exprPos(p.f, v, re.Line, re.Col), fmt.Errorf("%w: %s: expr: %w", ErrInvalid, p.label, err))
		return false
	}
	d.Expr, d.expr = s, e
	return true
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
