package redis

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/storetest"
	"github.com/embedd/embedd/internal/testassets"
)

// openCluster returns an online store on the test Redis Cluster with a
// key prefix of its own, checking every command it sends with a SlotLog.
func openCluster(t *testing.T) (*Online, *testassets.SlotLog) {
	addrs := testassets.RedisClusterAddrs(t)
	prefix := fmt.Sprintf("embedd-test:cl%d:", time.Now().UnixNano())
	o := New(Options{Addr: addrs, Prefix: prefix})
	if _, ok := o.c.(*goredis.ClusterClient); !ok {
		t.Fatalf("client for %q: got %T; want a cluster client", addrs, o.c)
	}
	log := testassets.NewSlotLog()
	o.c.AddHook(log)
	if err := o.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	t.Cleanup(func() {
		testassets.DeleteKeys(context.Background(), o.c.(*goredis.ClusterClient), prefix+"*")
		o.Close()
		if v := log.Violations(); len(v) > 0 {
			t.Errorf("commands across hash slots: %q", v)
		}
	})
	return o, log
}

// TestOnlineConformanceCluster runs the online store's conformance suite
// on a three-master Redis Cluster: batches of up to 1000 entities spread
// over every master.
func TestOnlineConformanceCluster(t *testing.T) {
	testassets.RedisClusterAddrs(t) // skip (or fail) once, not per subtest
	var logs []*testassets.SlotLog
	storetest.TestOnline(t, func(t *testing.T) store.Online {
		o, log := openCluster(t)
		logs = append(logs, log)
		return o
	})
	scripts := 0
	for _, l := range logs {
		scripts += l.Scripts()[setScript.Hash()]
	}
	if scripts == 0 {
		t.Errorf("the write script ran %d times on the cluster; want > 0", scripts)
	}
}

// TestClusterSpreadsEntities: one batch's entities land on every master
// (so the cluster test exercises the per-node split), each whole.
func TestClusterSpreadsEntities(t *testing.T) {
	o, _ := openCluster(t)
	ctx := context.Background()
	var ents []store.Entity
	for i := range 300 {
		ents = append(ents, store.Entity{ID: fmt.Sprintf("spread-%d", i), Embedding: []int8{int8(i)}, Scale: 1, ModelVersion: "v", UpdatedAt: time.UnixMilli(int64(i)), Features: map[string]float64{"i": float64(i)}})
	}
	if err := o.SetEntities(ctx, ents, time.Minute); err != nil {
		t.Fatal(err)
	}
	var masters atomic.Int64 // ForEachMaster calls fn concurrently
	err := o.c.(*goredis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
		n := 0
		it := m.Scan(ctx, 0, o.prefix+"*", 1000).Iterator()
		for it.Next(ctx) {
			n++
		}
		if n > 0 {
			masters.Add(1)
		}
		return it.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if masters.Load() < 3 {
		t.Errorf("entities on %d masters; want 3", masters.Load())
	}
	node := NewClient(Options{Addr: strings.Split(testassets.RedisClusterAddrs(t), ",")[0]})
	defer node.Close()
	for _, c := range []goredis.UniversalClient{o.c, node} {
		// The cluster client scans every master; a single-node client one
		// node: the keys of its slots only.
		seen := map[string]bool{}
		if err := ScanKeys(ctx, c, o.prefix+"*", 100, func(k string) bool { seen[k] = true; return true }); err != nil {
			t.Fatal(err)
		}
		_, cluster := c.(*goredis.ClusterClient)
		if cluster != (len(seen) == len(ents)) || len(seen) == 0 {
			t.Errorf("ScanKeys with %T: %d keys of %d", c, len(seen), len(ents))
		}
		n := 0
		if err := ScanKeys(ctx, c, o.prefix+"*", 100, func(string) bool { n++; return n < 3 }); err != nil || n != 3 {
			t.Errorf("ScanKeys stopped by fn: %d calls, %v; want 3", n, err)
		}
	}
	got, err := o.GetEntities(ctx, []string{"spread-7", "spread-299"})
	if err != nil || got[0] == nil || got[1] == nil || got[1].Features["i"] != 299 {
		t.Fatalf("GetEntities: %v, %v", got, err)
	}
	if ttl := o.c.PTTL(ctx, o.key("spread-299")).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("pttl: got %v; want (0, 1m]", ttl)
	}
}

// TestTransient: network errors and a cluster's transient replies are
// ErrUnavailable; other replies are not.
func TestTransient(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("x: %w", goredis.ErrClosed), true},
		{goredis.ErrPoolTimeout, true},
		{nil, false},
		{fmt.Errorf("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
	} {
		if got := Transient(tt.err); got != tt.want {
			t.Errorf("Transient(%v): got %v; want %v", tt.err, got, tt.want)
		}
	}
	// Real replies of a cluster in transition, from a real node: a replica
	// answers a write with MOVED (ReadOnly off), and CLUSTERDOWN, TRYAGAIN,
	// LOADING, READONLY, MASTERDOWN are the other transient states.
	c := testassets.RedisCluster(t)
	ctx := context.Background()
	var mu sync.Mutex
	var replica string
	c.ForEachSlave(ctx, func(ctx context.Context, r *goredis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		replica = r.Options().Addr
		return nil
	})
	r := goredis.NewClient(&goredis.Options{Addr: replica})
	defer r.Close()
	err := r.Set(ctx, "embedd-test:moved", "1", time.Second).Err()
	if !Transient(err) {
		t.Errorf("a replica's reply to a write (%v): Transient false; want true", err)
	}
	o := &Online{c: r, prefix: "embedd-test:"}
	if err := o.wrap(err); !strings.Contains(err.Error(), store.ErrUnavailable.Error()) {
		t.Errorf("wrap(%v): got %v; want ErrUnavailable", err, err)
	}
}

// scriptCall matches a redis.call or redis.pcall and its first two
// arguments: the command and the key it is given.
var scriptCall = regexp.MustCompile(`redis\.p?call\(\s*'([A-Za-z]+)'\s*(?:,\s*([^,)]+))?`)

// TestClusterSlots proves statically that every Lua script in the tree
// touches one hash slot: it finds each script (a .lua file, or a Go string
// constant that calls redis.call), and checks that the script reads only
// KEYS[1] and that every keyed redis.call is given KEYS[1] (directly or
// through a local assigned from it). With the scripts' callers giving one
// key each, whose hash tag is the entity id (checked at run time by the
// SlotLog of the cluster suites), every script runs on one slot.
func TestClusterSlots(t *testing.T) {
	root := repoRoot(t)
	scripts := map[string]string{} // where -> source
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case strings.HasSuffix(path, ".lua"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			scripts[rel] = string(b)
		case strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go"):
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING && strings.Contains(lit.Value, "redis.call") {
					s, err := strconv.Unquote(lit.Value)
					if err == nil {
						scripts[fmt.Sprintf("%s:%d", rel, fset.Position(lit.Pos()).Line)] = s
					}
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The scripts known today; a new one is checked too, and this list
	// makes sure the walk found these.
	for _, want := range []string{"internal/features/session/session.lua", "internal/features/service/statestore.go", "internal/features/service/seal.go", "internal/store/redis/redis.go"} {
		found := false
		for where := range scripts {
			found = found || strings.HasPrefix(where, want)
		}
		if !found {
			t.Errorf("no Lua script found in %s", want)
		}
	}
	for where, src := range scripts {
		problems, calls := checkScript(src)
		for _, p := range problems {
			t.Errorf("%s: %s", where, p)
		}
		t.Logf("%s: %d redis.call, all on KEYS[1]", where, calls)
	}
}

// TestCheckScript: the static check fails scripts that touch another key.
func TestCheckScript(t *testing.T) {
	for _, tt := range []struct {
		src  string
		want string
	}{
		{"return redis.call('GET', KEYS[1])", ""},
		{"local k, t = KEYS[1], ARGV[1]\nredis.call('HSET', k, 'a', t)", ""},
		{"redis.call('GET', KEYS[1]); return redis.call('GET', KEYS[2])", "KEYS[2]"},
		{"return redis.call('GET', 'embedd:other')", "not KEYS[1]"},
		{"local k = ARGV[1]\nreturn redis.call('DEL', k) -- KEYS[1]", "never reads KEYS[1]"},
		{"return 1", "no redis.call"},
	} {
		problems, _ := checkScript(strings.ReplaceAll(tt.src, `\n`, "\n"))
		got := strings.Join(problems, "; ")
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("checkScript(%q): got %q; want %q", tt.src, got, tt.want)
		}
	}
}

// checkScript returns what makes src touch more than KEYS[1], and how many
// redis.call it makes.
func checkScript(src string) (problems []string, calls int) {
	code := stripLuaComments(src)
	if m := regexp.MustCompile(`KEYS\[\s*([^\]]*)\]`).FindAllStringSubmatch(code, -1); len(m) == 0 {
		problems = append(problems, "the script never reads KEYS[1]")
	} else {
		for _, k := range m {
			if strings.TrimSpace(k[1]) != "1" {
				problems = append(problems, fmt.Sprintf("reads KEYS[%s]; a script must touch one key (KEYS[1])", k[1]))
			}
		}
	}
	// Locals aliasing KEYS[1]: "local key = KEYS[1]" or "local key, t = KEYS[1], ARGV[1]".
	alias := map[string]bool{"KEYS[1]": true}
	for _, m := range regexp.MustCompile(`local\s+([\w\s,]+?)\s*=\s*([^\n]+)`).FindAllStringSubmatch(code, -1) {
		names, vals := strings.Split(m[1], ","), strings.Split(m[2], ",")
		for i, n := range names {
			if i < len(vals) && strings.TrimSpace(vals[i]) == "KEYS[1]" {
				alias[strings.TrimSpace(n)] = true
			}
		}
	}
	found := scriptCall.FindAllStringSubmatch(code, -1)
	if len(found) == 0 {
		problems = append(problems, "no redis.call found")
	}
	for _, c := range found {
		cmd, key := strings.ToUpper(c[1]), strings.TrimSpace(c[2])
		if cmd == "PING" || cmd == "TIME" {
			continue
		}
		if !alias[key] {
			problems = append(problems, fmt.Sprintf("redis.call('%s', %s): the key is not KEYS[1]", c[1], key))
		}
	}
	return problems, len(found)
}

func stripLuaComments(src string) string {
	var b strings.Builder
	for _, line := range strings.Split(src, "\n") {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}
