package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/embedd/embedd/internal/features/registry/rules"
)

// Ref names a feature version; Version 0 means the latest servable one.
type Ref = rules.Ref

// ParseRef parses "name" or "name@version".
func ParseRef(s string) (Ref, error) {
	r, msg := parseRef(s)
	if msg != "" {
		return Ref{}, fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	return r, nil
}

// parseRef returns the reference or a message saying what is wrong.
func parseRef(s string) (Ref, string) {
	name, ver, pinned := strings.Cut(s, "@")
	if !validName(name) {
		return Ref{}, fmt.Sprintf("reference %q: name must match [a-z][a-z0-9_]* and be at most %d bytes", s, MaxNameBytes)
	}
	if !pinned {
		return Ref{Name: name}, ""
	}
	v, err := strconv.Atoi(ver)
	if err != nil || v < 1 || v > MaxVersion || ver != strconv.Itoa(v) {
		return Ref{}, fmt.Sprintf("reference %q: version must be an integer in [1, %d]", s, MaxVersion)
	}
	return Ref{Name: name, Version: v}, ""
}

func validName(s string) bool {
	if s == "" || len(s) > MaxNameBytes || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Type is the type of a feature's values. Every value travels as a
// float64 (features.Value); int values are integral and bool values are 0
// or 1.
type Type string

const (
	TypeFloat Type = "float"
	TypeInt   Type = "int"
	TypeBool  Type = "bool"
)

// Status is the lifecycle state of a version.
type Status string

const (
	StatusActive     Status = "active"
	StatusDeprecated Status = "deprecated" // served, flagged
	StatusRetired    Status = "retired"    // kept for the record, never served
)

// Kind is how a feature is computed; it follows from the source.
type Kind string

const (
	KindWindow   Kind = "window"   // source events or a value name
	KindSession  Kind = "session"  // source session
	KindTemporal Kind = "temporal" // source temporal
	KindRule     Kind = "rule"     // source rule
	KindExternal Kind = "external" // source external
)

// Reserved sources; any other valid name is the name of an event value.
const (
	SourceEvents   = "events"
	SourceSession  = "session"
	SourceTemporal = "temporal"
	SourceRule     = "rule"
	SourceExternal = "external"
)

// Aggregations by kind.
const (
	AggCount  = "count"
	AggSum    = "sum"
	AggAvg    = "avg"
	AggMin    = "min"
	AggMax    = "max"
	AggStddev = "stddev"
	AggZScore = "zscore"

	SessionDuration      = "session_duration"
	EventsInSession      = "events_in_session"
	AvgTimeBetweenEvents = "avg_time_between_events"
	SessionEngagement    = "session_engagement_score"
	IsNewSession         = "is_new_session"
	TemporalHourOfDay    = "hour_of_day"
	TemporalDayOfWeek    = "day_of_week"
	TemporalSinceLast    = "time_since_last_event"
	DefaultTimeZone      = "UTC"
)

// aggregationType returns the type an aggregation of kind k yields, and
// whether the aggregation is known for k. Rules and external features
// have no aggregation.
func aggregationType(k Kind, agg string) (Type, bool) {
	switch k {
	case KindWindow:
		switch agg {
		case AggCount:
			return TypeInt, true
		case AggSum, AggAvg, AggMin, AggMax, AggStddev, AggZScore:
			return TypeFloat, true
		}
	case KindSession:
		switch agg {
		case EventsInSession:
			return TypeInt, true
		case IsNewSession:
			return TypeBool, true
		case SessionDuration, AvgTimeBetweenEvents, SessionEngagement:
			return TypeFloat, true
		}
	case KindTemporal:
		switch agg {
		case TemporalHourOfDay, TemporalDayOfWeek:
			return TypeInt, true
		case TemporalSinceLast:
			return TypeFloat, true
		}
	}
	return "", false
}

func aggregationsOf(k Kind, source string) string {
	switch {
	case k == KindWindow && source == SourceEvents:
		return AggCount
	case k == KindWindow:
		return "count, sum, avg, min, max, stddev, zscore"
	case k == KindSession:
		return "session_duration, events_in_session, avg_time_between_events, session_engagement_score, is_new_session"
	case k == KindTemporal:
		return "hour_of_day, day_of_week, time_since_last_event"
	}
	return ""
}

// Pos is a position in a registry file; Line and Col are 1-based, 0 when
// unknown.
type Pos struct {
	File      string
	Line, Col int
}

func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is a problem found while loading, at a position in a file.
type Error struct {
	Pos Pos
	Err error
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Def is one version of a feature. Defs returned by a Registry are copies;
// the compiled parts they share are immutable.
type Def struct {
	Name    string
	Version int
	Entity  string
	Type    Type
	Source  string
	// Aggregation is the window aggregation, session feature or temporal
	// feature; empty for rules and external features.
	Aggregation string
	// Window is the window length of window features, else 0.
	Window time.Duration
	// Expr is a rule's expression as written, else empty.
	Expr string
	// TimeZone is the IANA zone of hour_of_day and day_of_week, else empty.
	TimeZone    string
	Description string
	Owner       string
	Tags        []string
	Sensitive   bool
	Status      Status
	// Pos is where the definition starts.
	Pos Pos
	// Fingerprint is Fingerprint(d), computed at load time.
	Fingerprint string

	kind Kind
	expr *rules.Expr
	deps []Dep
	loc  *time.Location
}

// Dep is a feature a rule refers to: as written in the expression, and the
// version it resolved to when the registry was loaded.
type Dep struct {
	Written  Ref
	Resolved Ref
}

// Ref returns name@version.
func (d Def) Ref() Ref { return Ref{Name: d.Name, Version: d.Version} }

// Kind returns how the feature is computed.
func (d Def) Kind() Kind { return d.kind }

// Deprecated reports whether the version is served with a deprecation flag.
func (d Def) Deprecated() bool { return d.Status == StatusDeprecated }

// Rule returns the compiled expression of a rule, else nil.
func (d Def) Rule() *rules.Expr { return d.expr }

// Deps returns the features a rule refers to, in order of first use.
func (d Def) Deps() []Dep { return slices.Clone(d.deps) }

// Location returns the time zone of hour_of_day and day_of_week, else nil.
func (d Def) Location() *time.Location { return d.loc }

// LogValue implements slog.LogValuer. A sensitive feature logs only its
// reference, so its definition and values never reach a log through it.
func (d Def) LogValue() slog.Value {
	if d.Sensitive {
		return slog.GroupValue(slog.String("feature", d.Ref().String()), slog.Bool("sensitive", true))
	}
	return slog.GroupValue(
		slog.String("feature", d.Ref().String()),
		slog.String("kind", string(d.kind)),
		slog.String("status", string(d.Status)),
	)
}

// fingerprintInput is the canonical form of what a definition computes.
// Name and version identify the definition and are not part of it; neither
// are description, owner, tags, sensitivity and status, which can change
// without changing any value.
type fingerprintInput struct {
	Entity      string `json:"entity"`
	Type        Type   `json:"type"`
	Source      string `json:"source"`
	Aggregation string `json:"aggregation,omitempty"`
	WindowNS    int64  `json:"window_ns,omitempty"`
	Expr        string `json:"expr,omitempty"`
	TimeZone    string `json:"timezone,omitempty"`
}

// Fingerprint returns the hex SHA-256 of the canonical form of what d
// computes: entity, type, source, aggregation, window, time zone and the
// canonical expression (rules.Expr.String, so spacing, redundant
// parentheses and number spelling do not count). Two definitions with the
// same fingerprint compute the same values from the same inputs.
func Fingerprint(d Def) string {
	in := fingerprintInput{
		Entity: d.Entity, Type: d.Type, Source: d.Source, Aggregation: d.Aggregation,
		WindowNS: int64(d.Window), TimeZone: d.TimeZone,
	}
	switch {
	case d.expr != nil:
		in.Expr = d.expr.String()
	case d.Expr != "":
		if e, err := rules.Parse(d.Expr); err == nil {
			in.Expr = e.String()
		} else {
			in.Expr = d.Expr
		}
	}
	b, err := json.Marshal(in)
	if err != nil {
		panic(err) // strings and ints always marshal
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sameDeclaration reports whether a and b declare exactly the same thing,
// documentation included.
func sameDeclaration(a, b *Def) bool {
	return a.Fingerprint == b.Fingerprint && a.Description == b.Description && a.Owner == b.Owner &&
		slices.Equal(a.Tags, b.Tags) && a.Sensitive == b.Sensitive && a.Status == b.Status
}

func shortFP(fp string) string { return fp[:min(len(fp), 12)] }
