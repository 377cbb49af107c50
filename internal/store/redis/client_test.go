package redis

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// TestNewClientOptions: every client built from Options gets the same
// connection settings, defaults filled in.
func TestNewClientOptions(t *testing.T) {
	c := NewClient(Options{Password: "secret", DB: 3, PoolSize: 7, ReadTimeout: 5 * time.Second}).(*goredis.Client)
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
	c2 := NewClient(Options{TLS: tc}).(*goredis.Client)
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
	got := o.c.(*goredis.Client).Options()
	if got.ReadTimeout != 3*time.Second || got.DialTimeout != 2*time.Second || got.MaxRetries != MaxRetries {
		t.Errorf("online store client: read %v dial %v retries %d", got.ReadTimeout, got.DialTimeout, got.MaxRetries)
	}
}

// TestNewClientCluster: several addresses, or Cluster, make a cluster
// client with the same settings (TLS, ACL user, password, timeouts,
// retries); one address without Cluster stays a single-node client.
func TestNewClientCluster(t *testing.T) {
	tc := &tls.Config{ServerName: "redis.example"}
	for _, tt := range []struct {
		name  string
		opts  Options
		addrs []string
	}{
		{"several addresses", Options{Addr: "10.0.0.1:7001, 10.0.0.2:7002,,10.0.0.3:7003"}, []string{"10.0.0.1:7001", "10.0.0.2:7002", "10.0.0.3:7003"}},
		{"one address and Cluster", Options{Addr: "redis-cluster.example:6379", Cluster: true}, []string{"redis-cluster.example:6379"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Username, opts.Password, opts.PoolSize, opts.ReadTimeout, opts.TLS = "embedd", "secret", 7, 5*time.Second, tc
			if !opts.IsCluster() {
				t.Fatal("IsCluster: got false; want true")
			}
			c, ok := NewClient(opts).(*goredis.ClusterClient)
			if !ok {
				t.Fatalf("NewClient: got %T; want *goredis.ClusterClient", NewClient(opts))
			}
			defer c.Close()
			o := c.Options()
			if fmt.Sprint(o.Addrs) != fmt.Sprint(tt.addrs) {
				t.Errorf("addrs: got %q; want %q", o.Addrs, tt.addrs)
			}
			if o.Username != "embedd" || o.Password != "secret" || o.PoolSize != 7 || o.TLSConfig != tc {
				t.Errorf("user %q password set %v pool %d tls %v", o.Username, o.Password == "secret", o.PoolSize, o.TLSConfig == tc)
			}
			if o.DialTimeout != 2*time.Second || o.ReadTimeout != 5*time.Second || o.WriteTimeout != time.Second || o.MaxRetries != MaxRetries {
				t.Errorf("dial %v read %v write %v retries %d; want 2s 5s 1s %d", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries, MaxRetries)
			}
		})
	}
	if (Options{Addr: "127.0.0.1:6379"}).IsCluster() {
		t.Error("one address without Cluster: IsCluster true")
	}
	if err := (Options{Addr: "a:1,b:2", DB: 2}).Check(); err == nil || !strings.Contains(err.Error(), "database 2") {
		t.Errorf("Check of a cluster with DB 2: got %v; want an error naming database 2", err)
	}
	if err := (Options{Addr: "a:1,b:2"}).Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}
