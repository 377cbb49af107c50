package testassets

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// MilvusOptions configures a private Milvus started by MilvusServer.
type MilvusOptions struct {
	// Auth turns on authorizationEnabled (user root, password Milvus).
	Auth bool
	// TLSDir holds server.pem, server.key and ca.pem: the proxy serves TLS,
	// mutual when TLSMode is 2 (default 1).
	TLSDir  string
	TLSMode int
}

// Milvus is a private Milvus standalone server (scripts/milvus.sh under its
// own name, data directory and ports), for tests that stop it or configure
// it; the shared server at EMBEDD_MILVUS_ADDR must not be touched by them.
type Milvus struct {
	Addr string
	t    testing.TB
	env  []string
	mu   sync.Mutex
}

// MilvusServer starts a private Milvus and removes it (data included) when
// the test ends. It takes 5-10 s and about 300 MB of memory.
func MilvusServer(t testing.TB, o MilvusOptions) *Milvus {
	t.Helper()
	if _, err := os.Stat(filepath.Join(CacheDir(), "milvus-venv-2.3.5", ".ok")); err != nil {
		missingStore(t, "Milvus is not installed: run scripts/milvus.sh start (%v)", err)
	}
	name := fmt.Sprintf("test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	port, metrics := FreePort(t), FreePort(t)
	m := &Milvus{Addr: "127.0.0.1:" + strconv.Itoa(port), t: t, env: append(os.Environ(),
		"EMBEDD_CACHE_DIR="+CacheDir(), "EMBEDD_MILVUS_NAME="+name,
		"EMBEDD_MILVUS_PORT="+strconv.Itoa(port), "EMBEDD_MILVUS_METRICS_PORT="+strconv.Itoa(metrics))}
	if o.Auth {
		m.env = append(m.env, "EMBEDD_MILVUS_AUTH=1")
	}
	if o.TLSDir != "" {
		mode := o.TLSMode
		if mode == 0 {
			mode = 1
		}
		m.env = append(m.env, "EMBEDD_MILVUS_TLS_DIR="+o.TLSDir, "EMBEDD_MILVUS_TLS_MODE="+strconv.Itoa(mode))
	}
	t.Cleanup(func() { m.script("stop", "--kill", "--wipe") })
	m.Start()
	return m
}

// Start starts the server (again, keeping its data) and waits until it is
// healthy.
func (m *Milvus) Start() {
	m.t.Helper()
	if out, err := m.script("start"); err != nil {
		m.t.Fatalf("milvus.sh start: %v\n%s", err, out)
	}
}

// Kill kills the server (SIGKILL: a crash), keeping its data.
func (m *Milvus) Kill() {
	m.t.Helper()
	if out, err := m.script("stop", "--kill"); err != nil {
		m.t.Fatalf("milvus.sh stop --kill: %v\n%s", err, out)
	}
}

func (m *Milvus) script(args ...string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "milvus.sh"), args...)
	cmd.Env = m.env
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// repoRoot is the directory of go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
