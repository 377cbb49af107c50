package testassets

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// RedisServer runs a private redis-server (Debian's) on 127.0.0.1:port,
// with its data (append-only file, fsync always) in dir, for tests that
// stop and restart Redis. stop kills it (also at the end of the test);
// calling RedisServer again with the same port and dir restarts it with
// its data. extra are more redis-server options (e.g. TLS, ACL users; an
// option given twice takes the later value, so "--port", "0" turns the
// plaintext port off). A missing redis-server is a skip, or a failure
// under EMBEDD_REQUIRE_STORES=1.
func RedisServer(t testing.TB, port int, dir string, extra ...string) (stop func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missingStore(t, "redis-server is not installed (apt-get install redis-server)")
	}
	p := strconv.Itoa(port)
	args := append([]string{"--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir}, extra...)
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { cmd.Process.Kill(); cmd.Wait() }) }
	t.Cleanup(stop)
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", "127.0.0.1:"+p)
		if err == nil {
			c.Close()
			return stop
		}
		if i > 250 {
			stop()
			t.Fatalf("redis-server on port %d did not start:\n%s", port, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// missingStore skips the test, or fails it under EMBEDD_REQUIRE_STORES=1.
func missingStore(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
