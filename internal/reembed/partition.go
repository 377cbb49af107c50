package reembed

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// MaxShards bounds a job's shard count.
const MaxShards = 4096

// Shard is the part of a job one process runs: the records whose id hashes
// to Index among Count shards. The zero Shard is the whole job (0 of 1).
type Shard struct {
	Index, Count int
}

// ParseShard reads "i/N" (0 <= i < N <= MaxShards).
func ParseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: want i/N, e.g. 0/4", s)
	}
	sh := Shard{Index: i, Count: n}
	return sh, sh.Check()
}

// Check reports a shard out of range.
func (s Shard) Check() error {
	if s.Count < 1 || s.Count > MaxShards || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard %d/%d: want 0 <= i < N <= %d", s.Index, s.Count, MaxShards)
	}
	return nil
}

func (s Shard) norm() Shard {
	if s.Count == 0 {
		return Shard{0, 1}
	}
	return s
}

func (s Shard) String() string { s = s.norm(); return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// name is the shard's part of its state file names.
func (s Shard) name() string { s = s.norm(); return fmt.Sprintf("%04d-of-%04d", s.Index, s.Count) }

// Owns reports whether id belongs to the shard: FNV-1a (64-bit) of the id's
// bytes, mod Count. The hash is fixed: changing it would reassign ids
// between the shards of a resumed job.
func (s Shard) Owns(id string) bool {
	s = s.norm()
	if s.Count == 1 {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()%uint64(s.Count) == uint64(s.Index)
}
