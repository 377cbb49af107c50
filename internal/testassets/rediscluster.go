package testassets

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RedisClusterEnv names the seed addresses of the test Redis Cluster
// (scripts/redis-cluster.sh start prints them; the Makefile exports them).
const RedisClusterEnv = "EMBEDD_REDIS_CLUSTER_ADDRS"

// RedisClusterAddrs returns $EMBEDD_REDIS_CLUSTER_ADDRS (comma-separated
// host:port seeds of a Redis Cluster). Unset is a skip, or a failure under
// EMBEDD_REQUIRE_STORES=1.
func RedisClusterAddrs(t testing.TB) string {
	t.Helper()
	a := os.Getenv(RedisClusterEnv)
	if a == "" {
		missingStore(t, "%s is unset; run scripts/redis-cluster.sh start and export %s=<its output>", RedisClusterEnv, RedisClusterEnv)
	}
	return a
}

// RedisCluster returns a cluster client on $EMBEDD_REDIS_CLUSTER_ADDRS
// after checking that every master answers and reports cluster_state:ok;
// it is closed at the end of the test.
func RedisCluster(t testing.TB) *goredis.ClusterClient {
	t.Helper()
	addrs := RedisClusterAddrs(t)
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitClusterOK(ctx, c); err != nil {
		t.Fatalf("redis cluster at %s: %v", addrs, err)
	}
	return c
}

// WaitClusterOK waits until every node of c's cluster (masters and
// replicas) answers CLUSTER INFO with cluster_state:ok.
func WaitClusterOK(ctx context.Context, c *goredis.ClusterClient) error {
	for {
		err := clusterOK(ctx, c)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func clusterOK(ctx context.Context, c *goredis.ClusterClient) error {
	c.ReloadState(ctx)
	return c.ForEachShard(ctx, func(ctx context.Context, n *goredis.Client) error {
		info, err := n.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Options().Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("node %s: cluster_state is not ok", n.Options().Addr)
		}
		return nil
	})
}

// DeleteKeys deletes every key matching pattern on every master of c (a
// test's cleanup).
func DeleteKeys(ctx context.Context, c *goredis.ClusterClient, pattern string) error {
	return c.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
		it := m.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			if err := m.Del(ctx, it.Val()).Err(); err != nil {
				return err
			}
		}
		return it.Err()
	})
}

// FailoverMaster fails over the master serving key's hash slot: CLUSTER
// FAILOVER on one of its replicas (the coordinated manual failover: the
// master stops taking writes, the replica catches up and takes over, no
// acknowledged write is lost). It waits until the replica is the slot's
// master and the cluster is ok, and returns the old and new master's
// addresses.
func FailoverMaster(ctx context.Context, c *goredis.ClusterClient, key string) (from, to string, err error) {
	// Another test may fail a shard over at the same time: the slots read
	// may show a shard mid-failover, the replica may have become the master
	// meanwhile ("send CLUSTER FAILOVER to a replica"), or a failover may
	// not complete; read the slots again and retry.
	for attempt := 0; ; attempt++ {
		from, to, err = failoverOnce(ctx, c, key)
		if err == nil || attempt == 10 || ctx.Err() != nil {
			return from, to, err
		}
		c.ReloadState(ctx)
		select {
		case <-ctx.Done():
			return from, to, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func failoverOnce(ctx context.Context, c *goredis.ClusterClient, key string) (from, to string, err error) {
	slot := KeySlot(key)
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		return "", "", err
	}
	var nodes []goredis.ClusterNode
	for _, s := range slots {
		if slot >= s.Start && slot <= s.End {
			nodes = s.Nodes
		}
	}
	if len(nodes) < 2 {
		return "", "", fmt.Errorf("slot %d of key %q has %d nodes; want a master and a replica", slot, key, len(nodes))
	}
	from, to = nodes[0].Addr, nodes[1].Addr
	rep := goredis.NewClient(&goredis.Options{Addr: to})
	defer rep.Close()
	if err := rep.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		return from, to, fmt.Errorf("CLUSTER FAILOVER on %s: %w", to, err)
	}
	deadline := time.After(15 * time.Second) // a manual failover times out by itself
	for {
		role, err := rep.Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "master" {
			break
		}
		select {
		case <-ctx.Done():
			return from, to, fmt.Errorf("replica %s did not become master: %w", to, ctx.Err())
		case <-deadline:
			return from, to, fmt.Errorf("replica %s did not become master within 15s", to)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return from, to, WaitClusterOK(ctx, c)
}

// KeySlot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of
// its hash tag (the part between the first "{" and the next "}", when not
// empty) or of the whole key, mod 16384.
func KeySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// SlotLog is a go-redis hook (install it with AddHook) that checks every
// command a cluster client sends: a Lua script call (EVAL, EVALSHA and
// their _RO forms) must name at least one key and all its keys must share
// one hash slot, as must the keys of every other multi-key command and of
// every MULTI/EXEC transaction. It counts script calls by their first
// argument (the script or its SHA1) for the test to check which scripts
// ran.
type SlotLog struct {
	mu         sync.Mutex // guards the fields below
	violations []string
	scripts    map[string]int
	commands   int
}

// NewSlotLog returns an empty log.
func NewSlotLog() *SlotLog { return &SlotLog{scripts: map[string]int{}} }

// Violations returns what broke the one-slot rule, in order.
func (l *SlotLog) Violations() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.violations...)
}

// Scripts returns how often each script (by SHA1, or source for EVAL) was
// called.
func (l *SlotLog) Scripts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.scripts))
	for k, v := range l.scripts {
		out[k] = v
	}
	return out
}

// Commands returns how many commands the log checked.
func (l *SlotLog) Commands() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.commands
}

// DialHook implements goredis.Hook.
func (l *SlotLog) DialHook(next goredis.DialHook) goredis.DialHook { return next }

// ProcessHook implements goredis.Hook.
func (l *SlotLog) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		l.check([]goredis.Cmder{cmd}, false)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements goredis.Hook.
func (l *SlotLog) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		tx := len(cmds) > 0 && strings.EqualFold(cmds[0].Name(), "multi")
		l.check(cmds, tx)
		return next(ctx, cmds)
	}
}

func (l *SlotLog) check(cmds []goredis.Cmder, tx bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	txSlot := -1
	for _, cmd := range cmds {
		l.commands++
		keys, script, err := cmdKeys(cmd)
		if err != nil {
			l.violations = append(l.violations, err.Error())
			continue
		}
		if script != "" {
			l.scripts[script]++
		}
		for _, k := range keys {
			s := KeySlot(k)
			if tx && txSlot >= 0 && s != txSlot {
				l.violations = append(l.violations, fmt.Sprintf("transaction: key %q in slot %d, an earlier key in slot %d", k, s, txSlot))
			}
			if tx {
				txSlot = s
			}
			if s != KeySlot(keys[0]) {
				l.violations = append(l.violations, fmt.Sprintf("%s: keys %q (slot %d) and %q (slot %d)", cmd.Name(), keys[0], KeySlot(keys[0]), k, s))
			}
		}
	}
}

// cmdKeys returns the keys of cmd that must share a slot, and the script
// of a script call.
func cmdKeys(cmd goredis.Cmder) (keys []string, script string, err error) {
	args := cmd.Args()
	str := func(i int) string { return fmt.Sprint(args[i]) }
	switch name := strings.ToLower(cmd.Name()); name {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
		if len(args) < 3 {
			return nil, "", fmt.Errorf("%s without numkeys: %v", name, args)
		}
		n, perr := strconv.Atoi(str(2))
		if perr != nil || n < 0 || 3+n > len(args) {
			return nil, "", fmt.Errorf("%s: bad numkeys in %v", name, args)
		}
		if n == 0 {
			return nil, "", fmt.Errorf("%s of %.16s: no key, so a cluster client routes it to a random node", name, str(1))
		}
		for i := 3; i < 3+n; i++ {
			keys = append(keys, str(i))
		}
		return keys, str(1), nil
	case "del", "unlink", "exists", "mget", "touch", "watch", "sinter", "sunion", "sdiff":
		for i := 1; i < len(args); i++ {
			keys = append(keys, str(i))
		}
	case "mset", "msetnx":
		for i := 1; i < len(args); i += 2 {
			keys = append(keys, str(i))
		}
	case "xread", "xreadgroup":
		for i := 1; i < len(args); i++ {
			if strings.EqualFold(str(i), "streams") {
				rest := args[i+1:]
				for j := 0; j < len(rest)/2; j++ {
					keys = append(keys, fmt.Sprint(rest[j]))
				}
				break
			}
		}
	case "multi", "exec":
		return nil, "", nil
	default:
		if pos := cmdFirstKey(name); pos > 0 && pos < len(args) {
			keys = append(keys, str(pos))
		}
	}
	return keys, "", nil
}

// cmdFirstKey: the single-key commands' key position (1), 0 for keyless
// commands this check knows.
func cmdFirstKey(name string) int {
	switch name {
	case "ping", "info", "cluster", "script", "scan", "command", "hello", "auth", "select", "client", "readonly", "role", "flushdb", "dbsize":
		return 0
	}
	return 1
}

// RedisClusterServer starts a private Redis Cluster of n masters (no
// replicas) for one test: n redis-servers (RedisServer: 127.0.0.1, data in
// temporary directories, stopped at the end of the test) started with
// --cluster-enabled and extra (e.g. TLS with --port 0 --tls-port PORT
// --tls-cluster yes, or ACL users; the literal "PORT" in extra is replaced
// by each node's port), the 16384 slots split evenly, joined with CLUSTER
// MEET, and waited for until cluster_state:ok. client gives the options
// (TLS, ACL user, password) to reach a node; Addr is set per node. It
// returns the nodes' addresses.
func RedisClusterServer(t testing.TB, n int, client goredis.Options, extra ...string) []string {
	t.Helper()
	type node struct {
		port, bus int
		c         *goredis.Client
	}
	nodes := make([]node, n)
	var addrs []string
	for i := range nodes {
		port, bus := FreePort(t), FreePort(t)
		args := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "5000"}
		for _, e := range extra {
			args = append(args, strings.ReplaceAll(e, "PORT", strconv.Itoa(port)))
		}
		RedisServer(t, port, t.TempDir(), args...)
		o := client
		o.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		c := goredis.NewClient(&o)
		t.Cleanup(func() { c.Close() })
		nodes[i] = node{port, bus, c}
		addrs = append(addrs, o.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, nd := range nodes {
		lo, hi := i*16384/n, (i+1)*16384/n-1
		if err := nd.c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("CLUSTER ADDSLOTSRANGE %d %d on %s: %v", lo, hi, addrs[i], err)
		}
		if i > 0 {
			if err := nd.c.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", nodes[0].port, nodes[0].bus).Err(); err != nil {
				t.Fatalf("CLUSTER MEET from %s: %v", addrs[i], err)
			}
		}
	}
	for _, nd := range nodes {
		for {
			info, err := nd.c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", n)) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("cluster of %v not ok after 60s: %v %q", addrs, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return addrs
}
