package redis

import (
	"context"
	"crypto/tls"
	"testing"
	"time"
)

// TestNewClientOptions: every client built from Options gets the same
// connection settings, defaults filled in.
func TestNewClientOptions(t *testing.T) {
	c := NewClient(Options{Password: "secret", DB: 3, PoolSize: 7, ReadTimeout: 5 * time.Second})
	defer c.Close()
	o := c.Options()
	if o.Addr != "127.0.0.1:6379" || o.Password != "secret" || o.DB != 3 || o.PoolSize != 7 {
		t.Errorf("addr %q password set %v db %d pool %d", o.Addr, o.Password == "secret", o.DB, o.PoolSize)
	}
	if o.DialTimeout != 2*time.Second || o.ReadTimeout != 5*time.Second || o.WriteTimeout != time.Second || o.MaxRetries != MaxRetries {
		t.Errorf("dial %v read %v write %v retries %d; want 2s 5s 1s %d", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries, MaxRetries)
	}
	if o.TLSConfig != nil {
		t.Error("TLS without Options.TLS")
	}
	tc := &tls.Config{ServerName: "redis.example"}
	c2 := NewClient(Options{TLS: tc})
	defer c2.Close()
	if c2.Options().TLSConfig != tc {
		t.Error("Options.TLS not passed to the client")
	}
}

// TestNewUsesNewClient: the online store's client is NewClient's, so it
// and the feature stores' client share one configuration.
func TestNewUsesNewClient(t *testing.T) {
	o := New(Options{Addr: addr(t), Prefix: "embedd-test:ent:", ReadTimeout: 3 * time.Second})
	defer o.Close()
	if err := o.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := o.c.Options()
	if got.ReadTimeout != 3*time.Second || got.DialTimeout != 2*time.Second || got.MaxRetries != MaxRetries {
		t.Errorf("online store client: read %v dial %v retries %d", got.ReadTimeout, got.DialTimeout, got.MaxRetries)
	}
}
