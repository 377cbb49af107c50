package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/embedd/embedd/internal/features/offline"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/fsutil"
	"github.com/embedd/embedd/internal/seal"
	"github.com/embedd/embedd/internal/store/redis"
)

// Encryption at rest of the feature stores. With a keyring (--feature-keys
// FILE, or the file's content in $EMBEDD_FEATURE_KEYS_DATA) serve seals
// every entity state (Redis field d, the embedded mode's state file), the
// values of sensitive features in offline snapshots, and the drift
// reference file. A registry with sensitive features and no keyring is
// refused unless --allow-plaintext-sensitive. `embedd keys rotate-features`
// rewrites what an older key sealed with the current key.

// featureKeysEnv holds a keyring's content, for secret stores that inject
// environment variables. (EMBEDD_FEATURE_KEYS, like every flag's variable,
// names the file.)
const featureKeysEnv = "EMBEDD_FEATURE_KEYS_DATA"

// driftFileAD binds a sealed drift reference file to its role.
const driftFileAD = "embedd/features/drift-reference"

// loadKeys returns the keyring of --feature-keys or $EMBEDD_FEATURE_KEYS_DATA,
// nil when neither is set. The file must not be readable by group or
// others. Errors never show key material.
func (c *featureConfig) loadKeys() (*seal.Keyring, error) {
	env := os.Getenv(featureKeysEnv)
	switch {
	case c.keysFile != "" && env != "":
		return nil, fmt.Errorf("%w: both --feature-keys and $%s are set; give one", errUsage, featureKeysEnv)
	case env != "":
		k, err := seal.Parse([]byte(env))
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", featureKeysEnv, err)
		}
		return k, nil
	case c.keysFile == "":
		return nil, nil
	}
	st, err := os.Stat(c.keysFile)
	if err != nil {
		return nil, fmt.Errorf("--feature-keys: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("--feature-keys %s has mode %04o; it must not be readable by group or others (chmod 600)", c.keysFile, st.Mode().Perm())
	}
	data, err := os.ReadFile(c.keysFile)
	if err != nil {
		return nil, fmt.Errorf("--feature-keys: %w", err)
	}
	k, err := seal.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("--feature-keys %s: %w", c.keysFile, err)
	}
	return k, nil
}

// encryptionPolicy loads the keyring and applies the rule: a registry with
// sensitive features needs one, unless --allow-plaintext-sensitive.
func (c *featureConfig) encryptionPolicy(reg *registry.Registry, logger *slog.Logger) (*seal.Keyring, error) {
	keys, err := c.loadKeys()
	if err != nil {
		return nil, err
	}
	var sensitive, timing []string
	for _, d := range reg.List() {
		if d.Sensitive {
			sensitive = append(sensitive, d.Ref().String())
			if k := d.Kind(); k == registry.KindSession || k == registry.KindTemporal {
				timing = append(timing, d.Ref().String())
			}
		}
	}
	switch {
	case keys != nil:
		logger.Info("feature state encrypted at rest", "keyring", keys)
	case len(sensitive) == 0:
		return nil, nil
	case !c.allowPlaintext:
		return nil, fmt.Errorf("%w: the feature registry declares sensitive features (%s): give --feature-keys FILE (or $%s) to encrypt them at rest, or --allow-plaintext-sensitive to store them in plaintext", errUsage, strings.Join(sensitive, ", "), featureKeysEnv)
	default:
		logger.Warn("sensitive features stored in plaintext (--allow-plaintext-sensitive)", "features", strings.Join(sensitive, ","))
	}
	if len(timing) > 0 {
		logger.Warn("sensitive session and temporal features derive from event times, which the session store keeps in plaintext", "features", strings.Join(timing, ","))
	}
	return keys, nil
}

// readDriftFile reads a drift reference file, opening it when sealed; a
// missing file is (nil, nil).
func readDriftFile(path string, keys *seal.Keyring) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil || !seal.IsSealed(data) {
		return data, err
	}
	if keys == nil {
		id, _ := seal.KeyID(data)
		return nil, fmt.Errorf("--drift-reference %s is sealed under key %q and no keyring is configured (--feature-keys)", path, id)
	}
	if data, err = keys.Open(data, []byte(driftFileAD)); err != nil {
		return nil, fmt.Errorf("--drift-reference %s: %w", path, err)
	}
	return data, nil
}

// writeDriftFile writes what save writes to path, 0600, sealed when keys
// is set.
func writeDriftFile(path string, keys *seal.Keyring, save func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := save(&buf); err != nil {
		return err
	}
	data := buf.Bytes()
	if keys != nil {
		sealed, err := keys.Seal(data, []byte(driftFileAD))
		clear(data)
		if err != nil {
			return err
		}
		data = sealed
	}
	return fsutil.WriteFile(path, data, 0o600) // raw sample values
}

// cmdKeysAll runs `embedd keys rotate-features`, and the other keys
// commands (keys.go) through cmdKeys.
func cmdKeysAll(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "rotate-features" {
		return cmdKeysRotateFeatures(ctx, args[1:], stdout)
	}
	return cmdKeys(args, stdout)
}

// rotateFlags are the flags of `keys rotate-features`: serve's, for the
// stores it rewrites.
var rotateFlags = []string{"data-dir", "redis-addr", "redis-cluster", "redis-password", "redis-user", "redis-tls-ca", "redis-tls-cert", "redis-tls-key",
	"features-dir", "feature-keys", "redis-feature-prefix", "offline-dir", "drift-reference", "allowed-lateness", "as-of-horizon",
	"feature-state-max-entities", "feature-state-max-bytes"}

// cmdKeysRotateFeatures implements `embedd keys rotate-features`: it
// rewrites every entity state (Redis, or the embedded mode's state file),
// offline snapshot and drift reference file that is not sealed under the
// keyring's current key, so that old keys can then be removed from it.
// Run it after every serve replica has the new keyring (new current key,
// old keys still listed); the embedded mode's state file only while serve
// is stopped (serve rewrites it from memory).
func cmdKeysRotateFeatures(ctx context.Context, args []string, stdout io.Writer) error {
	var st storeConfig
	var fc featureConfig
	all := flag.NewFlagSet("all", flag.ContinueOnError)
	st.register(all)
	fc.register(all)
	fs := newFlagSet("keys rotate-features", "")
	for _, name := range rotateFlags {
		f := all.Lookup(name)
		fs.Var(f.Value, f.Name, f.Usage)
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := resolve(fs, ""); err != nil {
		return err
	}
	keys, err := fc.loadKeys()
	if err != nil {
		return err
	}
	if keys == nil {
		return fmt.Errorf("%w: keys rotate-features needs --feature-keys FILE (or $%s)", errUsage, featureKeysEnv)
	}
	reg, err := loadRegistry(fc.registryDir, "")
	if err != nil {
		return err
	}
	n, err := fc.rotateStates(ctx, &st, reg, keys)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "entity states resealed with key %s: %d\n", keys.Current(), n)
	return fc.rotateFiles(st.dir(), reg, keys, stdout)
}

// rotateStates reseals the entity states: in Redis with --redis-addr, else
// the embedded mode's state file.
func (fc *featureConfig) rotateStates(ctx context.Context, st *storeConfig, reg *registry.Registry, keys *seal.Keyring) (int, error) {
	base := service.DefaultOptions()
	base.Window.AllowedLateness = fc.allowedLateness
	wcfg, err := service.WindowConfig(reg, base.Window, fc.asOfHorizon)
	if err != nil {
		return 0, err
	}
	if st.redisAddr != "" {
		ropts, err := st.redisOptions()
		if err != nil {
			return 0, err
		}
		rc := redis.NewClient(ropts)
		defer rc.Close()
		r := service.NewRedis(rc, wcfg, fc.redisStatePrefix, service.StateTTL(wcfg))
		r.SetKeys(keys)
		return r.Reseal(ctx)
	}
	mem := service.NewMemoryLimited(wcfg, service.MemoryLimits{Entities: fc.stateEntities, Bytes: fc.stateBytes})
	mem.SetKeys(keys)
	path := filepath.Join(st.dir(), "features", "state.bin")
	if err := mem.LoadFile(path); err != nil {
		return 0, err
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	n, _ := mem.Usage()
	return n, mem.Save(path)
}

// rotateFiles reseals the offline snapshots and the drift reference file.
func (fc *featureConfig) rotateFiles(dataDir string, reg *registry.Registry, keys *seal.Keyring, stdout io.Writer) error {
	sensitive := map[string]bool{}
	for _, d := range reg.List() {
		sensitive[d.Name] = sensitive[d.Name] || d.Sensitive
	}
	offDir := fc.offlineDir
	if offDir == "" {
		offDir = filepath.Join(dataDir, "offline")
	}
	off, err := offline.OpenOptions(offDir, offline.Options{Keys: keys})
	if err != nil {
		return err
	}
	n, err := off.Reseal(func(f string) bool { return sensitive[f] })
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "offline snapshots resealed: %d\n", n)
	if fc.driftFile == "" {
		return nil
	}
	data, err := readDriftFile(fc.driftFile, keys)
	if err != nil || data == nil {
		return err
	}
	if err := writeDriftFile(fc.driftFile, keys, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "drift reference file resealed: %s\n", fc.driftFile)
	return nil
}
