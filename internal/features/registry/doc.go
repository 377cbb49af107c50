// Package registry is embedd's feature registry: the versioned definitions
// of every feature the service computes and serves, declared in YAML files
// and validated as a whole when they are loaded.
//
// # Files
//
// A file holds one or more YAML documents, each a mapping with the keys
// features and sets:
//
//	features:
//	  - name: amount_sum_5m          # [a-z][a-z0-9_]*, at most 64 bytes
//	    version: 1                   # explicit, 1 to MaxVersion
//	    entity: user                 # what the feature describes
//	    type: float                  # float, int or bool
//	    source: amount               # see below
//	    aggregation: sum
//	    window: 5m
//	    description: Sum of purchase amounts in the last 5 minutes.
//	    owner: payments-team
//	    tags: [payments]             # optional
//	    sensitive: true              # optional, default false
//	    status: active               # optional: active (default), deprecated, retired
//	sets:
//	  - name: default
//	    description: optional
//	    features: [amount_sum_5m, user_engagement_score@1]
//
// The source says how a feature is computed and which other keys it takes:
//
//	source                aggregation                               other keys
//	events                count (every event of the entity)         window
//	<value name>          count sum avg min max stddev zscore      window
//	session               session_duration events_in_session
//	                      avg_time_between_events
//	                      session_engagement_score is_new_session
//	temporal              hour_of_day day_of_week                   timezone (IANA, default UTC)
//	                      time_since_last_event
//	rule                  (none)                                    expr (package rules)
//	external              (none: supplied by the caller or the online store)
//
// A window is a Go duration in whole seconds, in (0, MaxWindow]. The type
// must fit the aggregation: count, events_in_session, hour_of_day and
// day_of_week are int, is_new_session is bool, rules are float or bool
// (matching the expression's type), external features any type, everything
// else float.
//
// Unknown keys, duplicate keys, YAML aliases and values of the wrong YAML
// type are errors. Loading reports every problem it finds (up to MaxErrors)
// as an *Error with the file, line and column; problems inside a rule
// expression also give the column within the expression.
//
// # Versions
//
// The registry holds many versions of a name. A definition is identified by
// (name, version) and its semantic content by its Fingerprint; changing
// what a feature computes means adding a new version, and the lock file
// (CheckLock, WriteLock) catches an edited definition whose version was not
// bumped. Old versions stay readable until their status is retired:
// Resolve("x@1") returns version 1, Resolve("x") the latest active version
// (or, if none is active, the latest deprecated one). A retired version is
// never served; asking for it yields ErrRetired, naming the version to use
// instead. Deprecated versions are served and say so (Def.Deprecated).
//
// A rule refers to other features of the same entity by name, or by
// name@version to pin one. An unpinned reference and an unpinned member of a
// feature set resolve to the latest servable version when the registry is
// loaded; pin a version where a rule must not follow new versions. Rules
// must not form cycles.
//
// # Sensitive features
//
// A sensitive feature's values must never be logged. Def implements
// slog.LogValuer and logs only its reference for sensitive features;
// Describe redacts how a sensitive feature is computed unless asked not to.
//
// A Registry is immutable after loading and safe for concurrent use.
package registry

import (
	"errors"
	"time"

	"github.com/embedd/embedd/internal/features/registry/rules"
)

// Errors returned by this package, wrapped with the item, index, file
// position or limit; test for them with errors.Is. Load returns *Error
// values (joined with errors.Join) that carry the position.
var (
	// ErrInvalid reports a definition, feature set, file or reference that
	// breaks a rule stated in the package documentation.
	ErrInvalid = errors.New("registry: invalid definition")
	// ErrLimit reports an input over one of the limits below.
	ErrLimit = errors.New("registry: limit exceeded")
	// ErrDuplicate reports a (name, version) or feature set defined twice
	// with different content; the message cites both positions.
	ErrDuplicate = errors.New("registry: duplicate definition")
	// ErrUnknown reports a reference to a feature, version or feature set
	// that is not defined.
	ErrUnknown = errors.New("registry: unknown feature")
	// ErrRetired reports a reference to a retired version; the message names
	// the version to use instead, if any.
	ErrRetired = errors.New("registry: feature retired")
	// ErrCycle reports rules that refer to each other in a cycle.
	ErrCycle = errors.New("registry: rule cycle")
	// ErrLock reports a definition that differs from the lock file.
	ErrLock = errors.New("registry: lock mismatch")
)

// Limits on what files may declare. They bound the memory and time a
// mistaken or hostile registry can cost.
const (
	MaxFileBytes        = 1 << 20
	MaxFiles            = 256
	MaxDefs             = 4096 // definitions, all versions of all names
	MaxSets             = 256
	MaxSetSize          = 1024
	MaxNameBytes        = 64
	MaxVersion          = rules.MaxVersion
	MaxWindow           = 24 * time.Hour
	MaxDescriptionBytes = 1024
	MaxOwnerBytes       = 128
	MaxTags             = 32
	MaxTagBytes         = 64
	MaxErrors           = 50 // reported by one Load; the rest are counted
	MaxLockBytes        = 4 << 20
)
