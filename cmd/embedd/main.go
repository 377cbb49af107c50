// Command embedd turns text into embedding vectors.
//
// Usage:
//
//	embedd serve [flags]                run the gRPC server (127.0.0.1:50051, metrics on :9090)
//	embedd embed [flags] TEXT...        embed texts and print JSON
//	embedd models list                  list known models and whether they are pulled
//	embedd models pull NAME...          download and verify model files
//	embedd models verify NAME...        check model files against their sha256
//	embedd models export ...            build an ONNX BERT encoder from safetensors
//	embedd runtime pull [--gpu]         download and verify the ONNX Runtime library
//	embedd bench [flags] TEXTS.jsonl... measure the engine in process
//	embedd health [--addr]              check a running server (gRPC health)
//	embedd version                      print versions
//
// Every flag can also be set by an environment variable EMBEDD_<FLAG> or a
// YAML file (--config); see resolve in config.go for the precedence.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, logger); err != nil {
		if errors.Is(err, flag.ErrHelp) { // -h: the usage is printed
			return
		}
		fmt.Fprintln(os.Stderr, "embedd:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usage = `embedd turns text into embedding vectors.

Commands:
  serve [flags]             run the gRPC embedding server (default 127.0.0.1:50051)
  embed [flags] TEXT...     embed texts and print JSON (TEXT "-" reads lines from stdin)
  models list               list known models
  models pull NAME...       download and verify model files
  models verify NAME...     check model files against their sha256
  models export [flags]     build an ONNX BERT encoder from config.json + safetensors
  runtime pull [--gpu]      download and verify the ONNX Runtime library (--gpu: the CUDA 13 build)
  bench [flags] TEXTS.jsonl measure the engine in process (throughput, p50/p99 per batch size)
  health [--addr ADDR]      check a running server with gRPC health (exit 0 when SERVING)
  features list             list the feature registry (--features-dir DIR for your own)
  features describe NAME    describe a feature (NAME or NAME@VERSION)
  features lock             print the registry's lock file (fingerprint per version)
  reembed [flags] SOURCE... re-embed files or a collection into a new collection version, then swap
  reembed finalize          verify a sharded reembed job's counts and swap the alias once
  collections list|swap|rollback|gc
                            a collection's versions, its alias, and gc of old versions
  keys new --id ID --scopes S[,S] [--file FILE]
                            make an API key for serve --auth-keys (printed once; the file keeps its hash)
  keys rotate-features [flags]
                            reseal feature state, snapshots and drift references under the current --feature-keys key
  version                   print versions

Run "embedd COMMAND -h" for the flags of a command.`

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, logger *slog.Logger) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n\n%s", errUsage, usage)
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return cmdServe(ctx, rest, logger)
	case "embed":
		return cmdEmbed(ctx, rest, stdin, stdout, logger)
	case "models":
		if len(rest) == 0 {
			return fmt.Errorf("%w: models needs list, pull, verify or export", errUsage)
		}
		switch rest[0] {
		case "list":
			return cmdModelsList(rest[1:], stdout, logger)
		case "pull":
			return cmdModelsPull(ctx, rest[1:], logger)
		case "verify":
			return cmdModelsVerify(rest[1:], stdout, logger)
		case "export":
			return cmdModelsExport(rest[1:], stdout)
		}
		return fmt.Errorf("%w: unknown models command %q", errUsage, rest[0])
	case "runtime":
		if len(rest) == 0 || rest[0] != "pull" {
			return fmt.Errorf("%w: runtime needs pull", errUsage)
		}
		return cmdRuntimePull(ctx, rest[1:], stdout, logger)
	case "features":
		return cmdFeatures(rest, stdout)
	case "bench":
		return cmdBench(ctx, rest, stdout, logger)
	case "reembed":
		return cmdReembed(ctx, rest, stdout, logger)
	case "collections":
		return cmdCollections(ctx, rest, stdout, logger)
	case "health":
		return cmdHealth(ctx, rest, stdout)
	case "keys":
		return cmdKeysAll(ctx, rest, stdout)
	case "version":
		return cmdVersion(rest, stdout, logger)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("%w: unknown command %q\n\n%s", errUsage, cmd, usage)
	}
}
