package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features/drift"
	"github.com/embedd/embedd/internal/features/offline"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/stream"
	"github.com/embedd/embedd/internal/seal"
	"github.com/embedd/embedd/internal/store/redis"
)

// Wiring of the features service for `embedd serve`: which stores, files
// and background loops it gets. What it counts and which features drift
// tracks is the service's own business (package service).

// Embedded mode: how many entity states memory holds by default, and how
// often they are saved to <data-dir>/features/state.bin (and at shutdown).
const (
	memoryStateEntities = 1 << 20
	memoryStateSave     = 10 * time.Second
)

// openedFeatures is what serve runs and closes.
type openedFeatures struct {
	svc     *service.Service
	run     []func(context.Context) error // background loops
	closers []func() error
	probes  []probe // the remote stores, for health
}

func (o *openedFeatures) close() {
	for i := len(o.closers) - 1; i >= 0; i-- {
		o.closers[i]()
	}
}

// open builds the features service on Redis (when st.redisAddr is set: one
// node or a Redis Cluster, see storeConfig.redisOptions) or in memory, with its offline layer, drift monitor and background loops.
func (c *featureConfig) open(ctx context.Context, st *storeConfig, reg prometheus.Registerer, logger *slog.Logger) (_ *openedFeatures, err error) {
	o := &openedFeatures{}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	freg, err := loadRegistry(c.registryDir, c.lockFile)
	if err != nil {
		return nil, err
	}
	keys, err := c.encryptionPolicy(freg, logger)
	if err != nil {
		return nil, err
	}
	opts := service.DefaultOptions()
	opts.Registry, opts.Logger = freg, logger
	opts.Window.AllowedLateness = c.allowedLateness
	opts.AsOfHorizon, opts.CacheTTL = c.asOfHorizon, c.cacheTTL
	dataDir := st.dir()
	var rc goredis.UniversalClient
	if st.redisAddr != "" {
		ropts, err := st.redisOptions()
		if err != nil {
			return nil, err
		}
		rc = redis.NewClient(ropts)
		o.closers = append(o.closers, rc.Close)
		o.probes = append(o.probes, probe{name: "redis (features)", services: []string{featureService}, check: func(ctx context.Context) error {
			return redis.Ping(ctx, rc)
		}})
	}
	if err := c.openStores(o, rc, dataDir, keys, &opts, logger); err != nil {
		return nil, err
	}
	if c.monitor {
		dopts := drift.DefaultOptions()
		dopts.AutoReference = c.driftReference
		if opts.Monitor, err = drift.New(opts.Clock, dopts); err != nil {
			return nil, err
		}
	}
	if o.svc, err = service.New(opts); err != nil {
		return nil, err
	}
	if err := o.svc.RegisterMetrics(reg); err != nil {
		return nil, err
	}
	if err := c.exportDrift(o, reg, keys); err != nil {
		return nil, err
	}
	if err := c.startLoops(o, rc, logger); err != nil {
		return nil, err
	}
	return o, nil
}

// openStores sets the state, session and offline stores of opts: on Redis
// when rc is set, else in memory (states saved under dataDir); the offline
// layer under --offline-dir or <dataDir>/offline. keys, if set, seals the
// states and the sensitive values of snapshots.
func (c *featureConfig) openStores(o *openedFeatures, rc goredis.UniversalClient, dataDir string, keys *seal.Keyring, opts *service.Options, logger *slog.Logger) error {
	wcfg, err := service.WindowConfig(opts.Registry, opts.Window, opts.AsOfHorizon)
	if err != nil {
		return err
	}
	scfg := session.DefaultConfig()
	scfg.Timeout = c.sessionTimeout
	if rc != nil {
		rs := service.NewRedis(rc, wcfg, c.redisStatePrefix, service.StateTTL(wcfg))
		rs.SetKeys(keys)
		opts.States = rs
		if opts.Sessions, err = session.NewRedis(rc, scfg, session.RedisOptions{Prefix: c.redisSessionPrefix}); err != nil {
			return err
		}
	} else {
		if c.stateEntities < 1 || c.stateBytes < 1 {
			return fmt.Errorf("%w: --feature-state-max-entities and --feature-state-max-bytes must be positive", errUsage)
		}
		mem := service.NewMemoryLimited(wcfg, service.MemoryLimits{Entities: c.stateEntities, Bytes: c.stateBytes})
		mem.SetKeys(keys)
		path := filepath.Join(dataDir, "features", "state.bin")
		if err := mem.LoadFile(path); err != nil {
			return err
		}
		opts.States = mem
		o.closers = append(o.closers, func() error { return mem.Save(path) })
		o.run = append(o.run, every(memoryStateSave, func(context.Context) {
			if err := mem.Save(path); err != nil {
				logger.Warn("saving feature state failed", "path", path, "err", err)
			}
		}))
		if opts.Sessions, err = session.NewMemory(scfg, session.MemoryOptions{MaxEntities: c.stateEntities}); err != nil {
			return err
		}
	}
	sessions := "redis"
	if rc == nil {
		sessions = "memory"
	}
	opts.States, opts.Sessions = c.trace.States(opts.States), c.trace.Sessions(opts.Sessions, sessions)
	offDir := c.offlineDir
	if offDir == "" {
		offDir = filepath.Join(dataDir, "offline")
	}
	opts.Offline, err = offline.OpenOptions(offDir, offline.Options{Keys: keys})
	return err
}

// exportDrift exports the service's drift monitor, if any, on reg, and
// loads its references from --drift-reference at start and writes them
// back at shutdown (sealed when keys is set: they hold raw sample values).
func (c *featureConfig) exportDrift(o *openedFeatures, reg prometheus.Registerer, keys *seal.Keyring) error {
	mon := o.svc.Monitor()
	if mon == nil {
		return nil
	}
	if _, err := drift.Register(reg, mon); err != nil {
		return err
	}
	if c.driftFile == "" {
		return nil
	}
	path := c.driftFile
	data, err := readDriftFile(path, keys)
	if err != nil {
		return err
	}
	if data != nil {
		if err := mon.LoadReferences(bytes.NewReader(data)); err != nil {
			return fmt.Errorf("--drift-reference %s: %w", path, err)
		}
	}
	o.closers = append(o.closers, func() error {
		return writeDriftFile(path, keys, mon.SaveReferences)
	})
	return nil
}

// startLoops adds the materializer and the stream consumer to o's
// background loops, as configured.
func (c *featureConfig) startLoops(o *openedFeatures, rc goredis.UniversalClient, logger *slog.Logger) error {
	if c.materializeEvery > 0 {
		o.run = append(o.run, every(c.materializeEvery, func(ctx context.Context) {
			path, n, err := o.svc.Materialize(ctx)
			if err != nil {
				logger.Warn("materialize failed", "err", err)
				return
			}
			logger.Info("offline snapshot written", "path", path, "entities", n)
		}))
	}
	if c.eventsStream == "" {
		return nil
	}
	if rc == nil {
		return fmt.Errorf("%w: --events-stream needs --redis-addr", errUsage)
	}
	name := c.consumerName
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	cons, err := stream.New(rc, o.svc, stream.Options{Stream: c.eventsStream, Consumer: name, Logger: logger})
	if err != nil {
		return err
	}
	o.run = append(o.run, cons.Run)
	return nil
}

// every returns a background loop that calls fn every d until its context
// ends.
func every(d time.Duration, fn func(context.Context)) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				fn(ctx)
			}
		}
	}
}
