package service

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/seal"
)

// Encryption at rest. An entity's encoded State holds the source values of
// its window features, its session and external feature values: every
// value a sensitive feature is computed from. With a keyring (SetKeys) the
// stores seal the whole encoded state (package seal, AES-256-GCM under the
// keyring's current key):
//
//   - Redis: field d of each hash, bound to its entity (associated data
//     "embedd/features/state" NUL entity), so a state copied to another
//     entity's hash fails to open;
//   - Memory: the file Save writes, as one message (its whole content is
//     then authenticated: no entity can be added, dropped or swapped);
//     states in process memory stay plaintext, as memory is not at rest.
//
// Reads accept states sealed under any key of the keyring, and plaintext
// states written before a keyring was configured (migration: they are
// sealed on their next write, or by Reseal). A state sealed under a key the
// keyring lacks, or read with no keyring, fails with an error naming the
// key id (wrapping seal.ErrUnknownKey), never as garbage.

// errNoKeyring reports sealed data read without a keyring.
var errNoKeyring = errors.New("features: sealed state and no keyring configured (--feature-keys)")

// stateAD is the associated data of entity's sealed state in Redis.
func stateAD(entity string) []byte {
	return append([]byte("embedd/features/state\x00"), entity...)
}

// memoryFileAD is the associated data of a sealed Memory.Save file.
const memoryFileAD = "embedd/features/state-file"

// unseal returns data opened with keys when it is sealed, else data.
func unseal(keys *seal.Keyring, data, ad []byte) ([]byte, error) {
	if !seal.IsSealed(data) {
		return data, nil
	}
	if keys == nil {
		id, _ := seal.KeyID(data)
		return nil, fmt.Errorf("%w: sealed under key %q: %w", errNoKeyring, id, seal.ErrUnknownKey)
	}
	return keys.Open(data, ad)
}

// decodeState decodes a stored state of entity, sealed or not.
func decodeState(keys *seal.Keyring, entity string, data []byte, cfg window.Config) (*State, error) {
	plain, err := unseal(keys, data, stateAD(entity))
	if err != nil {
		return nil, err
	}
	return unmarshalState(plain, cfg)
}

// encodeState encodes st for entity, sealed when keys is set.
func encodeState(keys *seal.Keyring, entity string, st *State) ([]byte, error) {
	enc, err := st.MarshalBinary()
	if err != nil || keys == nil {
		return enc, err
	}
	return keys.Seal(enc, stateAD(entity))
}

// SetKeys makes r seal the states it writes under keys' current key and
// open states sealed under any of its keys. Call it before r is used.
func (r *Redis) SetKeys(keys *seal.Keyring) { r.keys = keys }

// SetKeys makes Save seal the file under keys' current key and LoadFile
// open files sealed under any of its keys. Call it before m is used.
func (m *Memory) SetKeys(keys *seal.Keyring) { m.keys = keys }

// resealSource sets d and bumps r when r is unchanged, keeping the TTL.
const resealSource = `
local r = redis.call('HGET', KEYS[1], 'r')
if (r or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[2], 'r', tostring((tonumber(r) or 0) + 1))
return 1`

// Reseal rewrites every state not sealed under the keyring's current key
// (sealed under an old key, or plaintext) with the current key, keeping
// each hash's TTL; afterwards the old keys can be removed from the
// keyring. A state that fails to open stops it with an error naming the
// entity. States written meanwhile by an updater are retried. It returns
// the number of states rewritten.
func (r *Redis) Reseal(ctx context.Context) (int, error) {
	if r.keys == nil {
		return 0, fmt.Errorf("%w: Reseal needs a keyring", ErrInvalid)
	}
	var ids []string
	var n int
	flush := func() error {
		for attempt := 0; len(ids) > 0; attempt++ {
			if attempt == MaxRetries {
				return fmt.Errorf("%w: %d entities kept changing while resealing (first %q)", ErrUnavailable, len(ids), ids[0])
			}
			done, retry, err := r.resealBatch(ctx, ids)
			n += done
			if err != nil {
				return err
			}
			ids = retry
		}
		return nil
	}
	var err error
	if scanErr := r.Scan(ctx, func(id string) bool {
		if ids = append(ids, id); len(ids) == 512 {
			err = flush()
		}
		return err == nil
	}); scanErr != nil {
		return n, scanErr
	}
	if err == nil {
		err = flush()
	}
	return n, err
}

// resealBatch reseals the states of ids that need it; it returns how many
// it rewrote and the ids to retry (written meanwhile).
func (r *Redis) resealBatch(ctx context.Context, ids []string) (int, []string, error) {
	reads := make([]*goredis.SliceCmd, len(ids))
	if _, err := r.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, id := range ids {
			reads[i] = p.HMGet(ctx, r.Key(id), "d", "r")
		}
		return nil
	}); err != nil {
		return 0, nil, r.wrap(err)
	}
	type write struct {
		id, rev string
		enc     []byte
	}
	var writes []write
	for i, id := range ids {
		vals, _ := reads[i].Result()
		if len(vals) != 2 {
			continue
		}
		d, ok := vals[0].(string)
		if !ok || r.keys.IsCurrent([]byte(d)) {
			continue // expired meanwhile, or already current
		}
		st, err := decodeState(r.keys, id, []byte(d), r.cfg)
		if err != nil {
			return 0, nil, fmt.Errorf("entity %q: %w", id, err)
		}
		enc, err := encodeState(r.keys, id, st)
		if err != nil {
			return 0, nil, err
		}
		rev, _ := vals[1].(string)
		writes = append(writes, write{id, rev, enc})
	}
	script := goredis.NewScript(resealSource)
	cmds := make([]*goredis.Cmd, len(writes))
	if _, err := r.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, w := range writes {
			cmds[i] = script.Eval(ctx, p, []string{r.Key(w.id)}, w.rev, w.enc)
		}
		return nil
	}); err != nil {
		return 0, nil, r.wrap(err)
	}
	var retry []string
	n := 0
	for i, c := range cmds {
		if v, _ := c.Int(); v == 1 {
			n++
		} else {
			retry = append(retry, writes[i].id)
		}
	}
	return n, retry, nil
}
