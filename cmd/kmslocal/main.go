// Command kmslocal runs a TEST AND DEMO server that speaks the AWS KMS API
// (AWS JSON 1.1) on loopback, for trying and testing the keyceremony import
// flow without AWS. It is not AWS KMS and gives no security guarantees; see
// package internal/kmslocal for what it implements.
//
// Usage:
//
//	kmslocal [--addr 127.0.0.1:4599] [--state FILE] [--ready-file FILE] [--pool-size N]
//	         [--pool-specs RSA_2048,...] [--pool-fill] [--pool-no-refill] [--latency 20ms] [--quota N] [--rotation-limit N]
//	         [--wrapping-algorithms ALG,...]
//
// It exits 0 after a clean shutdown on SIGINT or SIGTERM, 1 on a runtime
// error and 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keyceremony/keyceremony/internal/kmslocal"
)

const usageText = `kmslocal - a TEST AND DEMO server that speaks the AWS KMS API on loopback.

THIS IS NOT AWS KMS AND GIVES NO SECURITY GUARANTEES. Key material is kept in
memory and, with --state, written to disk in the clear, with the private keys
of outstanding import tokens. Requests are not authenticated: any SigV4
credentials are accepted and signatures are not checked. Use it only for tests
and demonstrations, with throwaway keys. It listens on loopback only.

It implements CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey,
ScheduleKeyDeletion, CancelKeyDeletion, CreateAlias, DeleteAlias, ListAliases,
GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial,
ListKeyRotations, RotateKeyOnDemand, GetKeyRotationStatus, ReplicateKey,
TagResource, UntagResource, ListResourceTags, Encrypt, Decrypt and
GenerateDataKey for SYMMETRIC_DEFAULT keys, with the KMS rules and errors of
importing and rotating key material. Each request acts in
the Region of its SigV4 signature; multi-Region keys (mrk-...) have replicas.

Usage:
  kmslocal [--addr 127.0.0.1:4599] [--state FILE] [--ready-file FILE] [--pool-size N]
           [--pool-specs RSA_2048,...] [--pool-fill] [--pool-no-refill] [--latency 20ms] [--quota N]
           [--rotation-limit N] [--wrapping-algorithms ALG,...]

Point an AWS SDK or the AWS CLI at it:
  export AWS_ENDPOINT_URL_KMS=http://127.0.0.1:4599 AWS_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  aws kms list-keys

It logs one line per request to stderr (operation, key ID, result; never key
material) and stops cleanly on SIGINT or SIGTERM.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the command with its environment passed in, for tests. It serves
// until ctx is done and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kmslocal", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported below, help goes to stdout
	addr := fs.String("addr", "127.0.0.1:4599", "listen `address` host:port; the host must be loopback (127.0.0.1, ::1 or localhost); port 0 picks a free port")
	state := fs.String("state", "", "JSON state `file`: loaded at start if it exists, rewritten after every change (key material in the clear)")
	readyFile := fs.String("ready-file", "", "once listening, write the actual listen address (host:port) to this `file`; removed on clean shutdown")
	wrapAlgs := fs.String("wrapping-algorithms", "", "comma-separated wrapping `algorithms` GetParametersForImport offers (default all), to test an endpoint without one")
	poolSize := fs.Int("pool-size", kmslocal.DefaultPoolSize, "RSA wrapping key pairs kept ready per size (2048, 3072, 4096); negative turns the pool off")
	poolSpecs := fs.String("pool-specs", "", "comma-separated wrapping key `specs` the pool keeps ready (default all: RSA_2048,RSA_3072,RSA_4096)")
	poolFill := fs.Bool("pool-fill", false, "fill the pool before listening (the ready file appears only then), so the first --pool-size imports per spec generate no key")
	poolNoRefill := fs.Bool("pool-no-refill", false, "fill the pool once and never refill it in the background (the keys after it are generated on demand), so that a client benchmarked on this machine does not share its CPU with the refill")
	latency := fs.Duration("latency", 0, "delay every response by this `duration`, emulating a network round trip (e.g. 20ms)")
	quota := fs.Float64("quota", 0, "emulate a KMS request quota: at most `N` requests per second, the rest get ThrottlingException (0: none)")
	rotationLimit := fs.Int("rotation-limit", kmslocal.DefaultRotationLimit, "on-demand rotations allowed per key")
	fs.Usage = func() {
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, usageText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return usageError(stderr, err.Error())
	}
	if fs.NArg() > 0 {
		return usageError(stderr, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if err := kmslocal.CheckLoopback(*addr); err != nil {
		fmt.Fprintf(stderr, "kmslocal: error: %v\n", err)
		fmt.Fprintln(stderr, "kmslocal: hint: kmslocal is a test server without authentication and listens on loopback only, e.g. --addr 127.0.0.1:4599")
		return 2
	}

	switch {
	case *latency < 0 || *latency > time.Minute:
		return usageError(stderr, fmt.Sprintf("--latency %v must be between 0 and 1m", *latency))
	case *quota < 0 || math.IsNaN(*quota) || math.IsInf(*quota, 0):
		return usageError(stderr, fmt.Sprintf("--quota %v must be a number of requests per second, 0 for none", *quota))
	case *rotationLimit < 1:
		return usageError(stderr, fmt.Sprintf("--rotation-limit %d must be at least 1", *rotationLimit))
	case *poolFill && *poolSize <= 0:
		return usageError(stderr, "--pool-fill needs a positive --pool-size")
	case *poolNoRefill && *poolSize <= 0:
		return usageError(stderr, "--pool-no-refill needs a positive --pool-size")
	}
	var specs []string
	if *poolSpecs != "" {
		specs = strings.Split(*poolSpecs, ",")
	}

	var algs []string
	if *wrapAlgs != "" {
		algs = strings.Split(*wrapAlgs, ",")
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	s, err := kmslocal.Open(kmslocal.Options{WrappingAlgorithms: algs,
		StateFile: *state, PoolSize: *poolSize, PoolSpecs: specs, PoolNoRefill: *poolNoRefill, Logger: logger,
		Latency: *latency, RequestsPerSecond: *quota, RotationLimit: *rotationLimit,
	})
	var se *kmslocal.StateError
	if err != nil && !errors.As(err, &se) {
		return usageError(stderr, "--pool-specs: "+err.Error())
	}
	if err != nil {
		fmt.Fprintf(stderr, "kmslocal: error: %v\n", err)
		fmt.Fprintln(stderr, "kmslocal: hint: move the file away to start with an empty state, or pass another --state file")
		return 1
	}
	defer s.Close()
	if *poolFill {
		fmt.Fprintf(stderr, "kmslocal: filling the wrapping key pool (%d per spec)\n", *poolSize)
		if err := s.WaitPoolFull(ctx); err != nil {
			fmt.Fprintf(stderr, "kmslocal: error: stopped before the pool was full: %v\n", err)
			return 1
		}
	}
	l, err := kmslocal.Listen(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "kmslocal: error: %v\n", err)
		return 1
	}
	bound := l.Addr().String()
	if *readyFile != "" {
		if err := writeReadyFile(*readyFile, bound); err != nil {
			l.Close()
			fmt.Fprintf(stderr, "kmslocal: error: failed to write the ready file: %v\n", err)
			return 1
		}
		defer os.Remove(*readyFile)
	}
	stateNote := "in memory only"
	if *state != "" {
		stateNote = "state in " + *state
	}
	fmt.Fprintf(stderr, "kmslocal: TEST AND DEMO server, not AWS KMS, no security guarantees; listening on http://%s (%s)\n", bound, stateNote)

	if err := s.Serve(ctx, l); err != nil {
		fmt.Fprintf(stderr, "kmslocal: error: %v\n", err)
		return 1
	}
	fmt.Fprintln(stderr, "kmslocal: stopped")
	return 0
}

func usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "kmslocal: error: %s\n", msg)
	fmt.Fprintln(stderr, "kmslocal: hint: run kmslocal --help for usage")
	return 2
}

// writeReadyFile writes addr and a newline to path through a temporary file
// and a rename, so a script polling for path never reads it half-written.
func writeReadyFile(path, addr string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kmslocal-ready-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(addr + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
