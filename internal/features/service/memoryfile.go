package service

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/embedd/embedd/internal/fsutil"
)

// File format of Memory.Save: "efms", u32 count, per entity u16 id length,
// id, u32 state length, state; then a CRC-32C of everything before. With a
// keyring (SetKeys) the whole of it is sealed as one message (seal.go).

// Save writes every state to path atomically (fsutil.WriteFile), for the
// embedded mode's restarts.
func (m *Memory) Save(path string) error {
	m.mu.Lock()
	b := []byte("efms")
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m.states)))
	for id, st := range m.states {
		b = appendString(b, id)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(st)))
		b = append(b, st...)
	}
	m.mu.Unlock()
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if m.keys != nil {
		sealed, err := m.keys.Seal(b, []byte(memoryFileAD))
		clear(b)
		if err != nil {
			return err
		}
		b = sealed
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return fsutil.WriteFile(path, b, 0o600)
}

// LoadFile replaces m's states with those saved at path; a missing file
// leaves m empty. A corrupt file is an error and changes nothing.
func (m *Memory) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if b, err = unseal(m.keys, b, []byte(memoryFileAD)); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(b) < 12 || string(b[:4]) != "efms" || crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return fmt.Errorf("%w: %s: bad header or checksum", errCorrupt, path)
	}
	r := &reader{b: b[4 : len(b)-4]}
	n := int(r.u32())
	// n is a claim: an entity takes at least 6 bytes (id and state lengths).
	states := make(map[string][]byte, min(n, len(r.b)/6))
	for range n {
		id := r.str()
		st := r.take(int(r.u32()))
		if r.err != nil {
			break
		}
		if _, err := unmarshalState(st, m.cfg); err != nil {
			return fmt.Errorf("%s: entity %q: %w", path, id, err)
		}
		states[id] = bytes.Clone(st)
	}
	if r.err != nil || len(r.b) != 0 {
		return fmt.Errorf("%w: %s: truncated", errCorrupt, path)
	}
	var total int64
	for id, st := range states {
		total += int64(len(id) + len(st))
	}
	if len(states) > m.limits.Entities || total > m.limits.Bytes {
		return fmt.Errorf("%s holds %d entities in %d bytes; limits %d entities, %d bytes (--feature-state-max-entities, --feature-state-max-bytes)", path, len(states), total, m.limits.Entities, m.limits.Bytes)
	}
	m.mu.Lock()
	m.states, m.bytes = states, total
	m.mu.Unlock()
	return nil
}
