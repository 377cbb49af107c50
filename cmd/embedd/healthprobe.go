package main

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Health: each gRPC service reports SERVING only while the stores it needs
// answer. A probe is a cheap real call to one store (Redis PING, a Milvus
// Get of one id), run every healthEvery with a timeout; the services it
// gates turn NOT_SERVING when it fails and SERVING when it succeeds again.
// The embedded store needs no probe (it is this process). The overall
// status ("") is NOT_SERVING while any probe fails: it is the readiness of
// the whole API. Liveness is the server answering health checks at all;
// EmbeddingService needs no store and stays SERVING.

const (
	healthEvery   = 5 * time.Second
	healthTimeout = 2 * time.Second
)

// probe checks one store; services are the gRPC services that need it.
type probe struct {
	name     string
	check    func(context.Context) error
	services []string
}

// healthProber runs the probes and sets the health server's statuses.
type healthProber struct {
	hs       *health.Server
	probes   []probe
	services []string // every registered service, "" included
	every    time.Duration
	timeout  time.Duration
	logger   *slog.Logger
	failing  map[string]error // probe name → its last error
}

func newHealthProber(hs *health.Server, services []string, probes []probe, logger *slog.Logger) *healthProber {
	return &healthProber{hs: hs, probes: probes, services: services, every: healthEvery, timeout: healthTimeout, logger: logger, failing: map[string]error{}}
}

// run probes until ctx ends; the first round runs at once.
func (p *healthProber) run(ctx context.Context) {
	if len(p.probes) == 0 {
		return
	}
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		p.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round runs every probe once and applies the statuses.
func (p *healthProber) round(ctx context.Context) {
	for _, pr := range p.probes {
		pctx, cancel := context.WithTimeout(ctx, p.timeout)
		err := pr.check(pctx)
		cancel()
		if ctx.Err() != nil {
			return // shutting down: the drain sets NOT_SERVING
		}
		prev, was := p.failing[pr.name]
		switch {
		case err != nil && !was:
			p.logger.Warn("health: store unreachable; its services report NOT_SERVING", "store", pr.name, "services", pr.services, "err", err)
			p.failing[pr.name] = err
		case err != nil:
			p.failing[pr.name] = err
		case was:
			p.logger.Info("health: store reachable again", "store", pr.name, "was", prev)
			delete(p.failing, pr.name)
		}
	}
	down := map[string]bool{}
	for _, pr := range p.probes {
		if _, bad := p.failing[pr.name]; bad {
			for _, s := range pr.services {
				down[s] = true
			}
			down[""] = true
		}
	}
	for _, s := range p.services {
		st := healthpb.HealthCheckResponse_SERVING
		if down[s] {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		p.hs.SetServingStatus(s, st)
	}
}
