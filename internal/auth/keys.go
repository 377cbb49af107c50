package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/time/rate"
)

// The key file (YAML), e.g.:
//
//	keys:
//	  - id: recommender                 # names the key in logs and audit
//	    sha256: 9f86d08...              # hex SHA-256 of the key (embedd keys new prints it)
//	    scopes: [embed, vectors:read, features:read]
//	    collections: [docs]             # optional: only these collections
//	    feature_sets: [user_profile]    # optional: only these feature sets
//	    rate: 200                       # optional: requests/s (token bucket)
//	    burst: 400                      # optional: bucket size (default rate)
//	    concurrency: 32                 # optional: calls in flight
//	    mtls_subjects: [recommender]    # optional: client certificate CNs that act as this key

// Limits on the key file.
const (
	MaxKeyFileBytes = 1 << 20
	MaxKeys         = 10000
	maxIDBytes      = 64
)

// KeyPrefix starts every key `embedd keys new` makes.
const KeyPrefix = "ek_"

type keyFile struct {
	Keys []keyEntry `yaml:"keys"`
}

type keyEntry struct {
	ID           string   `yaml:"id"`
	SHA256       string   `yaml:"sha256"`
	Scopes       []string `yaml:"scopes"`
	Collections  []string `yaml:"collections"`
	FeatureSets  []string `yaml:"feature_sets"`
	Rate         float64  `yaml:"rate"`
	Burst        int      `yaml:"burst"`
	Concurrency  int      `yaml:"concurrency"`
	MTLSSubjects []string `yaml:"mtls_subjects"`
}

// key is one loaded entry with its limiters.
type key struct {
	p       *Principal
	entry   keyEntry
	limiter *rate.Limiter // nil: no rate limit
	slots   chan struct{} // nil: no concurrency limit
}

// keyring is one loaded key file.
type keyring struct {
	byHash    map[[32]byte]*key
	bySubject map[string]*key
	stamp     stamp
}

// HashKey returns the hex SHA-256 of key, as the key file stores it.
func HashKey(k string) string {
	h := sha256.Sum256([]byte(k))
	return hex.EncodeToString(h[:])
}

// NewKey returns a new random key (256 bits, base64url, with KeyPrefix).
func NewKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// parseKeys validates a key file's content; errors name the entry.
func parseKeys(data []byte, prev *keyring) (*keyring, error) {
	if len(data) > MaxKeyFileBytes {
		return nil, fmt.Errorf("%d bytes; limit %d", len(data), MaxKeyFileBytes)
	}
	var f keyFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
		return nil, err
	}
	if len(f.Keys) > MaxKeys {
		return nil, fmt.Errorf("%d keys; limit %d", len(f.Keys), MaxKeys)
	}
	kr := &keyring{byHash: map[[32]byte]*key{}, bySubject: map[string]*key{}}
	ids := map[string]bool{}
	for i, e := range f.Keys {
		k, err := newKey(e, prev)
		if err != nil {
			return nil, fmt.Errorf("keys[%d] (id %q): %w", i, e.ID, err)
		}
		if ids[e.ID] {
			return nil, fmt.Errorf("keys[%d]: id %q repeated", i, e.ID)
		}
		ids[e.ID] = true
		var h [32]byte
		hex.Decode(h[:], []byte(strings.ToLower(e.SHA256)))
		if _, dup := kr.byHash[h]; dup {
			return nil, fmt.Errorf("keys[%d] (id %q): the same key as an earlier entry", i, e.ID)
		}
		kr.byHash[h] = k
		for _, s := range e.MTLSSubjects {
			if _, dup := kr.bySubject[s]; dup || s == "" {
				return nil, fmt.Errorf("keys[%d] (id %q): mtls subject %q empty or repeated", i, e.ID, s)
			}
			kr.bySubject[s] = k
		}
	}
	return kr, nil
}

// newKey validates e and builds its key, reusing the limiters of the
// previous load's key of the same id and settings, so a reload does not
// reset them.
func newKey(e keyEntry, prev *keyring) (*key, error) {
	if e.ID == "" || len(e.ID) > maxIDBytes || strings.ContainsFunc(e.ID, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("id must be 1 to %d printable bytes", maxIDBytes)
	}
	if b, err := hex.DecodeString(e.SHA256); err != nil || len(b) != sha256.Size {
		return nil, errors.New("sha256 must be 64 hex digits (embedd keys new prints it)")
	}
	if len(e.Scopes) == 0 {
		return nil, errors.New("no scopes")
	}
	p := &Principal{ID: e.ID, scopes: map[Scope]bool{}}
	for _, s := range e.Scopes {
		if !slices.Contains(Scopes, Scope(s)) {
			return nil, fmt.Errorf("unknown scope %q (known: %v)", s, Scopes)
		}
		p.scopes[Scope(s)] = true
	}
	if e.Collections != nil {
		p.collections = setOf(e.Collections)
	}
	if e.FeatureSets != nil {
		p.featureSets = setOf(e.FeatureSets)
	}
	if e.Rate < 0 || e.Burst < 0 || e.Concurrency < 0 {
		return nil, errors.New("rate, burst and concurrency must not be negative")
	}
	k := &key{p: p, entry: e}
	if prev != nil {
		for _, old := range prev.byHash {
			if old.entry.ID == e.ID && old.entry.Rate == e.Rate && old.entry.Burst == e.Burst && old.entry.Concurrency == e.Concurrency {
				k.limiter, k.slots = old.limiter, old.slots
				return k, nil
			}
		}
	}
	if e.Rate > 0 {
		burst := e.Burst
		if burst == 0 {
			burst = max(1, int(e.Rate))
		}
		k.limiter = rate.NewLimiter(rate.Limit(e.Rate), burst)
	}
	if e.Concurrency > 0 {
		k.slots = make(chan struct{}, e.Concurrency)
	}
	return k, nil
}

func setOf(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// stamp identifies a file's content cheaply.
type stamp struct {
	mod  time.Time
	size int64
}

// Keys is the key file, reloaded when it changes.
type Keys struct {
	path   string
	logger *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	cur     *keyring
	checked time.Time
	failed  stamp
}

// LoadKeys reads the key file at path; it fails if the file does not load.
// A file readable by other users is refused: it names who may call what.
func LoadKeys(path string, logger *slog.Logger) (*Keys, error) {
	if logger == nil {
		logger = slog.Default()
	}
	k := &Keys{path: path, logger: logger, now: time.Now}
	kr, err := k.load(nil)
	if err != nil {
		return nil, err
	}
	k.cur, k.checked = kr, k.now()
	return k, nil
}

func (k *Keys) load(prev *keyring) (*keyring, error) {
	st, err := os.Stat(k.path)
	if err != nil {
		return nil, fmt.Errorf("auth: key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("auth: key file %s is mode %v: make it readable by its owner only (chmod 600)", k.path, st.Mode().Perm())
	}
	data, err := os.ReadFile(k.path)
	if err != nil {
		return nil, fmt.Errorf("auth: key file: %w", err)
	}
	kr, err := parseKeys(data, prev)
	if err != nil {
		return nil, fmt.Errorf("auth: key file %s: %w", k.path, err)
	}
	kr.stamp = stamp{st.ModTime(), st.Size()}
	return kr, nil
}

// current returns the keyring, reloading the file if it changed (checked
// at most once a second).
func (k *Keys) current() *keyring {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if now.Sub(k.checked) < time.Second {
		return k.cur
	}
	k.checked = now
	st, err := os.Stat(k.path)
	if err != nil {
		k.logger.Warn("auth: cannot check the key file; keeping the loaded keys", "err", err)
		return k.cur
	}
	s := stamp{st.ModTime(), st.Size()}
	if s == k.cur.stamp || s == k.failed {
		return k.cur
	}
	kr, err := k.load(k.cur)
	if err != nil {
		k.failed = s
		k.logger.Warn("auth: key file reload failed; keeping the loaded keys", "err", err)
		return k.cur
	}
	k.cur, k.failed = kr, stamp{}
	k.logger.Info("auth: key file reloaded", "path", k.path, "keys", len(kr.byHash))
	return kr
}

// lookup returns the key whose hash is h's, or nil.
func (k *Keys) lookup(secret string) *key {
	return k.current().byHash[sha256.Sum256([]byte(secret))]
}

// lookupSubject returns the key an mTLS subject acts as, or nil.
func (k *Keys) lookupSubject(cn string) *key {
	return k.current().bySubject[cn]
}

func secondsToDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// CheckKeyFile reports whether data is a valid key file.
func CheckKeyFile(data []byte) error {
	_, err := parseKeys(data, nil)
	return err
}
