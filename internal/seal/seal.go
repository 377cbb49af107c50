// Package seal encrypts data at rest with AES-256-GCM under a keyring of
// named keys, so that embedd's sensitive feature values never reach Redis
// or a file in plaintext.
//
// A sealed message describes itself:
//
//	"esl" | version u8 (1) | key id length u8 | key id | nonce (12 bytes) |
//	ciphertext | GCM tag (16 bytes)
//
// The GCM additional data is the header (everything before the nonce)
// followed by the caller's associated data, which binds a message to the
// place it belongs (an entity's state, a snapshot row): a message moved to
// another place, or altered in any byte, fails to open with ErrOpen.
// Nonces are random (96 bits), so one key must not seal more than about
// 2^32 messages; rotate keys long before (the state stores reseal on every
// write, so count writes, not entities).
//
// Rotation: Seal always uses the keyring's current key; Open accepts any
// key of the keyring, so data sealed under an old key stays readable until
// it is rewritten (embedd keys rotate-features), after which the old key
// can be dropped from the file. A message under a key the keyring lacks
// fails with ErrUnknownKey naming the key id.
//
// Key material never leaves a Keyring: it has no accessor, and Keyring's
// String and LogValue print key ids only.
//
// Concurrency: a *Keyring is immutable and safe for concurrent use.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Errors.
var (
	// ErrUnknownKey reports a message sealed under a key id the keyring
	// does not hold; the message names the id.
	ErrUnknownKey = errors.New("seal: unknown key")
	// ErrOpen reports a message that does not authenticate: altered, moved
	// to another place (associated data), or the key with its id is not the
	// one it was sealed with.
	ErrOpen = errors.New("seal: message does not authenticate")
	// ErrMalformed reports bytes that are not a sealed message.
	ErrMalformed = errors.New("seal: malformed message")
	// ErrKeyring reports an invalid keyring file.
	ErrKeyring = errors.New("seal: invalid keyring")
)

const (
	magic     = "esl"
	version   = 1
	nonceSize = 12
	tagSize   = 16
	// KeySize is the length of a key in bytes (AES-256).
	KeySize = 32
	// MaxKeyID is the longest key id, in bytes.
	MaxKeyID = 64
)

// Keyring holds named AES-256-GCM keys, one of them current.
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD
}

// New returns a keyring of keys (id → 32-byte key) whose current key is
// current. Ids are 1 to MaxKeyID bytes of [A-Za-z0-9._-].
func New(current string, keys map[string][]byte) (*Keyring, error) {
	k := &Keyring{current: current, aeads: make(map[string]cipher.AEAD, len(keys))}
	for id, key := range keys {
		if err := checkID(id); err != nil {
			return nil, err
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("%w: key %q is %d bytes; want %d", ErrKeyring, id, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", ErrKeyring, id, err)
		}
		if k.aeads[id], err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", ErrKeyring, id, err)
		}
	}
	if _, ok := k.aeads[current]; !ok {
		return nil, fmt.Errorf("%w: current key %q is not among the keys (%s)", ErrKeyring, current, strings.Join(k.IDs(), ", "))
	}
	return k, nil
}

func checkID(id string) error {
	if id == "" || len(id) > MaxKeyID {
		return fmt.Errorf("%w: key id %q: want 1 to %d bytes", ErrKeyring, id, MaxKeyID)
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: key id %q: only letters, digits, '.', '_' and '-'", ErrKeyring, id)
		}
	}
	return nil
}

// Current returns the id of the key Seal uses.
func (k *Keyring) Current() string { return k.current }

// IDs returns the key ids, sorted.
func (k *Keyring) IDs() []string {
	ids := make([]string, 0, len(k.aeads))
	for id := range k.aeads {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// String names the keys, never their material.
func (k *Keyring) String() string {
	return fmt.Sprintf("keyring(current %s; keys %s)", k.current, strings.Join(k.IDs(), ", "))
}

// LogValue implements slog.LogValuer: key ids only.
func (k *Keyring) LogValue() slog.Value {
	return slog.GroupValue(slog.String("current", k.current), slog.String("keys", strings.Join(k.IDs(), ",")))
}

// Overhead is how many bytes Seal adds to a plaintext under the current key.
func (k *Keyring) Overhead() int { return len(magic) + 2 + len(k.current) + nonceSize + tagSize }

// Seal encrypts plaintext under the current key, bound to associatedData
// (which is authenticated, not stored).
func (k *Keyring) Seal(plaintext, associatedData []byte) ([]byte, error) {
	out := make([]byte, 0, k.Overhead()+len(plaintext))
	out = append(out, magic...)
	out = append(out, version, byte(len(k.current)))
	out = append(out, k.current...)
	hdr := len(out)
	out = out[:hdr+nonceSize]
	if _, err := rand.Read(out[hdr:]); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	ad := append(out[:hdr:hdr], associatedData...)
	return k.aeads[k.current].Seal(out, out[hdr:hdr+nonceSize], plaintext, ad), nil
}

// Open decrypts a message Seal made under any key of the keyring with the
// same associatedData. Errors wrap ErrMalformed, ErrUnknownKey or ErrOpen
// and name the key id.
func (k *Keyring) Open(msg, associatedData []byte) ([]byte, error) {
	id, hdr, err := parse(msg)
	if err != nil {
		return nil, err
	}
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w: sealed under key %q, which the keyring lacks (it has %s)", ErrUnknownKey, id, strings.Join(k.IDs(), ", "))
	}
	ad := append(slices.Clip(msg[:hdr]), associatedData...)
	out, err := aead.Open(nil, msg[hdr:hdr+nonceSize], msg[hdr+nonceSize:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: sealed under key %q: altered, moved from another place, or not the key %q it was sealed with", ErrOpen, id, id)
	}
	return out, nil
}

// IsCurrent reports whether msg is sealed under the current key (and so
// needs no rewrite when rotating).
func (k *Keyring) IsCurrent(msg []byte) bool {
	id, _, err := parse(msg)
	return err == nil && id == k.current
}

// IsSealed reports whether b starts like a sealed message. The formats
// embedd seals (entity states, JSON, Parquet) never start with its magic.
func IsSealed(b []byte) bool {
	return len(b) >= len(magic)+1 && string(b[:len(magic)]) == magic && b[len(magic)] == version
}

// KeyID returns the id of the key msg claims to be sealed under.
func KeyID(msg []byte) (string, error) {
	id, _, err := parse(msg)
	return id, err
}

// parse returns msg's key id and the length of its header.
func parse(msg []byte) (id string, hdr int, err error) {
	if !IsSealed(msg) || len(msg) < len(magic)+2 {
		return "", 0, fmt.Errorf("%w: no header", ErrMalformed)
	}
	n := int(msg[len(magic)+1])
	hdr = len(magic) + 2 + n
	if len(msg) < hdr+nonceSize+tagSize {
		return "", 0, fmt.Errorf("%w: %d bytes; too short", ErrMalformed, len(msg))
	}
	id = string(msg[len(magic)+2 : hdr])
	if checkID(id) != nil {
		return "", 0, fmt.Errorf("%w: bad key id", ErrMalformed)
	}
	return id, hdr, nil
}
