package seal

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// MaxKeyringBytes bounds a keyring file.
const MaxKeyringBytes = 64 << 10

// Parse reads a keyring file (YAML):
//
//	# embedd feature keys: base64 of 32 random bytes each
//	# (openssl rand -base64 32)
//	current: k2
//	keys:
//	  k1: 9pJ0...=   # old: still read, never written
//	  k2: Vb7Q...=
//
// Errors name the key id, never the key.
func Parse(data []byte) (*Keyring, error) {
	if len(data) > MaxKeyringBytes {
		return nil, fmt.Errorf("%w: %d bytes; limit %d", ErrKeyring, len(data), MaxKeyringBytes)
	}
	var f struct {
		Current string            `yaml:"current"`
		Keys    map[string]string `yaml:"keys"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		// yaml's messages quote offending lines, which may hold a key.
		return nil, fmt.Errorf("%w: not a YAML mapping of current and keys", ErrKeyring)
	}
	if f.Current == "" || len(f.Keys) == 0 {
		return nil, fmt.Errorf("%w: want current: ID and keys: {ID: base64 of %d bytes}", ErrKeyring, KeySize)
	}
	keys := make(map[string][]byte, len(f.Keys))
	for id, s := range f.Keys {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q is not standard base64", ErrKeyring, id)
		}
		keys[id] = b
	}
	return New(f.Current, keys)
}

// NewKey returns a random key, base64-encoded as Parse reads it.
func NewKey() (string, error) {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}
