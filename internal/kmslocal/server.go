package kmslocal

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// DefaultPoolSize is the number of RSA wrapping key pairs kept ready per
// WrappingKeySpec when Options.PoolSize is 0.
const DefaultPoolSize = 2

// contentType is the media type of AWS JSON 1.1 requests and responses.
const contentType = "application/x-amz-json-1.1"

// maxBodySize bounds request bodies; the largest KMS request the server
// handles (ImportKeyMaterial: two 6 KiB blobs in base64) is far below it.
const maxBodySize = 1 << 20

// Options configures a Server. The zero value is an in-memory server with
// the real clock, the default pool size and no logging.
type Options struct {
	// WrappingAlgorithms, if set, are the only wrapping algorithms
	// GetParametersForImport offers (others get an
	// UnsupportedOperationException), to test clients against an endpoint
	// that lacks one, as an older Region might.
	WrappingAlgorithms []string

	// Clock returns the current time; nil means time.Now. Every time-based
	// rule (import token lifetime, ValidTo, deletion dates) reads this clock,
	// so tests can move time forward.
	Clock func() time.Time

	// StateFile, if set, names a JSON file that holds all keys, aliases and
	// outstanding import tokens. It is loaded by Open (a missing file is an
	// empty state) and rewritten after every call that changes state. It
	// contains key material and the private wrapping keys of outstanding
	// import tokens in the clear.
	StateFile string

	// PoolSize is the number of RSA key pairs kept ready for each
	// WrappingKeySpec (RSA_2048, RSA_3072, RSA_4096), generated and refilled
	// by background goroutines. 0 means DefaultPoolSize; a negative value
	// turns the pool off, so every GetParametersForImport generates its key
	// pair on demand.
	PoolSize int

	// PoolNoRefill makes the pool fill once: after PoolSize
	// GetParametersForImport calls of a spec, each generates its key pair
	// on demand. Refilling in the background takes CPU on the machine the
	// server runs on, which a client measured against it (make bench-kms)
	// would not share with a real KMS.
	PoolNoRefill bool

	// PoolSpecs names the WrappingKeySpecs (RSA_2048, RSA_3072, RSA_4096)
	// the pool keeps ready; empty means all three.
	PoolSpecs []string

	// RotationLimit is the number of on-demand rotations each key allows;
	// 0 means DefaultRotationLimit.
	RotationLimit int

	// Latency delays every response by this long (real time, not Clock),
	// to emulate the round trip to a KMS endpoint over a network.
	Latency time.Duration

	// RequestsPerSecond, if positive, emulates a KMS request quota shared by
	// all operations: requests beyond it (a token bucket with a burst of
	// one second's worth) get ThrottlingException, which the AWS SDKs retry.
	RequestsPerSecond float64

	// Logger receives one line per request (operation, key ID, result,
	// status, duration) and nothing else: never key material, tokens or
	// plaintexts. nil discards.
	Logger *slog.Logger
}

// Server is an HTTP handler that speaks the AWS KMS JSON 1.1 protocol for a
// subset of KMS; see the package documentation. Its methods are safe for
// concurrent use.
type Server struct {
	opts  Options
	clock func() time.Time
	log   *slog.Logger
	pool  *keyPool
	quota *bucket

	mu    sync.Mutex // guards st and dirty
	st    *store
	dirty bool // st changed since it was last saved
}

var _ http.Handler = (*Server)(nil)

// New returns a Server for opts. Like httptest.NewServer it panics if it
// cannot start, which happens only when opts.StateFile is set and cannot be
// loaded; use Open to get that error instead. Call Close when done to stop
// the key pool's goroutines.
func New(opts Options) *Server {
	s, err := Open(opts)
	if err != nil {
		panic("kmslocal: " + err.Error())
	}
	return s
}

// Open returns a Server for opts, loading opts.StateFile if it is set and
// exists. It returns a *StateError if the file cannot be read or is not a
// valid kmslocal state file, and an error naming the option for invalid
// PoolSpecs. Call Close when done.
func Open(opts Options) (*Server, error) {
	st, err := loadState(opts.StateFile)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, clock: opts.Clock, log: opts.Logger, st: st}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	size := opts.PoolSize
	if size == 0 {
		size = DefaultPoolSize
	}
	var bits []int
	for _, spec := range opts.PoolSpecs {
		b, ok := wrappingKeyBits[spec]
		if !ok {
			return nil, fmt.Errorf("pool wrapping key spec %q is not RSA_2048, RSA_3072 or RSA_4096", spec)
		}
		bits = append(bits, b)
	}
	s.pool = newKeyPool(size, bits, !opts.PoolNoRefill)
	s.quota = newBucket(opts.RequestsPerSecond)
	return s, nil
}

// Close stops the background key generation. A key pair being generated
// when Close is called is finished and dropped. Close does not stop Serve;
// cancel its context for that. The Server still answers requests after
// Close, generating wrapping keys on demand.
func (s *Server) Close() error {
	s.pool.close()
	return nil
}

// WaitPoolFull returns once the wrapping key pool holds PoolSize key pairs
// of each of its specs, or with ctx's error. A server started this way
// hands out its first PoolSize wrapping keys of each spec without
// generating any.
func (s *Server) WaitPoolFull(ctx context.Context) error { return s.pool.waitFull(ctx) }

// call is one request being handled.
type call struct {
	op      string
	body    []byte
	region  string    // from the SigV4 credential scope
	now     time.Time // s.clock() when the request arrived
	keyID   string    // the key the request resolved to, for the log
	wrapKey *rsa.PrivateKey
}

type handler func(*Server, *call) (any, error)

// handlers maps X-Amz-Target operation names (after "TrentService.") to
// their implementation.
var handlers = map[string]handler{
	"CancelKeyDeletion":         (*Server).cancelKeyDeletion,
	"CreateAlias":               (*Server).createAlias,
	"CreateKey":                 (*Server).createKey,
	"Decrypt":                   (*Server).decrypt,
	"DeleteAlias":               (*Server).deleteAlias,
	"DeleteImportedKeyMaterial": (*Server).deleteImportedKeyMaterial,
	"DescribeKey":               (*Server).describeKey,
	"DisableKey":                (*Server).disableKey,
	"EnableKey":                 (*Server).enableKey,
	"Encrypt":                   (*Server).encrypt,
	"GenerateDataKey":           (*Server).generateDataKey,
	"GetKeyRotationStatus":      (*Server).getKeyRotationStatus,
	"GetParametersForImport":    (*Server).getParametersForImport,
	"ImportKeyMaterial":         (*Server).importKeyMaterial,
	"ListAliases":               (*Server).listAliases,
	"ListKeyRotations":          (*Server).listKeyRotations,
	"ListKeys":                  (*Server).listKeys,
	"ReplicateKey":              (*Server).replicateKey,
	"RotateKeyOnDemand":         (*Server).rotateKeyOnDemand,
	"ScheduleKeyDeletion":       (*Server).scheduleKeyDeletion,
	"TagResource":               (*Server).tagResource,
	"UntagResource":             (*Server).untagResource,
	"ListResourceTags":          (*Server).listResourceTags,
}

// ServeHTTP answers one AWS JSON 1.1 request: POST / with X-Amz-Target
// "TrentService.<Operation>". It requires an Authorization header in the
// SigV4 form ("AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/kms/...")
// and takes the region for ARNs from it, but it does not verify the
// signature: any credentials are accepted. Errors are HTTP 400 (500 for
// internal errors) with {"__type": ..., "message": ...} and the
// X-Amzn-ErrorType header, which the AWS SDKs turn into their typed errors.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if s.opts.Latency > 0 {
		time.Sleep(s.opts.Latency)
	}
	c := &call{region: DefaultRegion}
	out, err := s.handle(r, c)

	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Amzn-Requestid", newUUID())
	status, result := http.StatusOK, "ok"
	var body []byte
	if err == nil {
		if body, err = json.Marshal(out); err != nil {
			err = internalError(fmt.Errorf("failed to encode %s response: %w", c.op, err))
		}
	}
	var cause error
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = internalError(err)
		}
		status, result, cause = ae.status, ae.code, ae.cause
		h.Set("X-Amzn-Errortype", ae.code)
		body, _ = json.Marshal(struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}{ae.code, ae.message})
	}
	w.WriteHeader(status)
	w.Write(body)

	attrs := []slog.Attr{
		slog.String("op", c.op),
		slog.String("key", c.keyID),
		slog.String("result", result),
		slog.Int("status", status),
		slog.Duration("took", time.Since(start)),
	}
	level := slog.LevelInfo
	if cause != nil {
		level = slog.LevelError
		attrs = append(attrs, slog.String("cause", cause.Error()))
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

func (s *Server) handle(r *http.Request, c *call) (any, error) {
	if r.Method != http.MethodPost {
		return nil, &apiError{status: http.StatusMethodNotAllowed, code: excUnknownOperation, message: "kmslocal accepts only POST /"}
	}
	if r.URL.Path != "/" {
		return nil, &apiError{status: http.StatusNotFound, code: excUnknownOperation, message: "kmslocal accepts only POST /"}
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return nil, newError(excMissingAuthToken, "Missing Authentication Token")
	}
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") {
		return nil, newError(excIncompleteSignature, "Authorization header must use AWS4-HMAC-SHA256 (kmslocal does not verify the signature, but requires the form)")
	}
	c.region = regionFromAuth(auth)

	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "TrentService.")
	c.op = target
	h := handlers[op]
	if !ok || h == nil {
		return nil, newError(excUnknownOperation, "kmslocal does not implement operation %q", target)
	}
	c.op = op
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != contentType {
		return nil, newError(excUnknownOperation, "Content-Type must be %s", contentType)
	}
	if err := s.quota.take(); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBodySize))
	if err != nil {
		return nil, newError(excSerialization, "failed to read the request body: %v", err)
	}
	c.body = body
	c.now = s.clock()

	if op == "GetParametersForImport" {
		// Key generation can take seconds; do it before taking the lock.
		s.prefetchWrappingKey(c)
		defer func() {
			if c.wrapKey != nil {
				s.pool.put(c.wrapKey)
			}
		}()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := h(s, c)
	if s.dirty && s.opts.StateFile != "" {
		if serr := s.saveLocked(); serr != nil {
			// The change stays in memory; the next call tries to save again.
			return nil, internalError(serr)
		}
	}
	s.dirty = false
	return out, err
}

// regionFromAuth returns the region of a SigV4 Authorization header's
// credential scope, or DefaultRegion.
func regionFromAuth(auth string) string {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return DefaultRegion
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(strings.TrimSpace(cred), "/")
	if len(parts) != 5 || !regionRE.MatchString(parts[2]) {
		return DefaultRegion
	}
	return parts[2]
}

var regionRE = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// ErrNotLoopback is wrapped by the errors Listen and CheckLoopback return for
// an address that is not on the loopback interface.
var ErrNotLoopback = errors.New("not a loopback address")

// CheckLoopback returns nil if addr ("host:port") names a loopback host: an
// IP address in 127.0.0.0/8, ::1, or "localhost". Otherwise it returns an
// error wrapping ErrNotLoopback (or a parse error). An empty host, which
// would listen on every interface, is refused.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if host == "" {
		return fmt.Errorf("listen address %q has no host, which means every interface: %w", addr, ErrNotLoopback)
	}
	return fmt.Errorf("listen address %q: host %q is %w (use 127.0.0.1, ::1 or localhost)", addr, host, ErrNotLoopback)
}

// Listen opens a TCP listener on addr after CheckLoopback accepts it, and
// checks the address actually bound is a loopback one. Use port 0 to let the
// system pick a free port; the listener's Addr reports it.
func Listen(addr string) (net.Listener, error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s: %w", addr, err)
	}
	if ta, ok := l.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		l.Close()
		return nil, fmt.Errorf("listen address %q bound to %s: %w", addr, l.Addr(), ErrNotLoopback)
	}
	return l, nil
}

// Serve answers requests on l until ctx is done, then shuts down gracefully:
// it stops accepting, lets requests in flight finish (for up to 5 seconds)
// and returns nil. It returns an error if serving fails or the shutdown does
// not finish in time. Serve closes l.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("kmslocal stopped serving on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
		return fmt.Errorf("failed to shut down kmslocal cleanly: %w", err)
	}
	<-errc // http.ErrServerClosed
	return nil
}
