package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// cmdHealth asks a running server for its gRPC health status: exit 0 when
// it answers SERVING, 1 otherwise. Containers use it as their health check.
func cmdHealth(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("health", "")
	addr := fs.String("addr", "127.0.0.1:50051", "server gRPC address")
	service := fs.String("service", "", "service name to check; empty: the server as a whole")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	var ct clientTLS
	ct.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	tc, err := ct.credentials()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(tc))
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service})
	if err != nil {
		return fmt.Errorf("health %s: %w", *addr, err)
	}
	fmt.Fprintln(stdout, res.GetStatus())
	if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health %s: %s", *addr, res.GetStatus())
	}
	return nil
}
