package ceremony

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// DefaultParallel is how many keys the online steps (create the KMS keys,
// fetch import parameters, import, check) work on at once when
// kms.parallel is not set. KMS limits requests per second per account and
// Region; a throttled request (ThrottlingException) is retried by the AWS
// SDK with backoff, so a higher setting trades retries for speed.
const DefaultParallel = 8

// MaxParallel bounds kms.parallel.
const MaxParallel = 64

// KeyError is one key's failure in a batch step.
type KeyError struct {
	Label string
	Err   error
}

// BatchError reports the keys a step could not do; the others were done
// and recorded, so running the ceremony again (resume) retries only these.
type BatchError struct {
	Step   string
	Total  int
	Failed []KeyError
}

func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d keys failed in %s: ", len(e.Failed), e.Total, e.Step)
	for i, f := range e.Failed {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Failed)-3)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %v", f.Label, f.Err)
	}
	return b.String()
}

// Unwrap returns the keys' errors.
func (e *BatchError) Unwrap() []error {
	out := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f.Err
	}
	return out
}

func (s *state) parallel() int {
	if s.cfg.KMS.Parallel > 0 {
		return s.cfg.KMS.Parallel
	}
	return DefaultParallel
}

// DefaultTokenParallel is how many keys generate-keys makes at once, each
// in a PKCS#11 session of its own, when token.parallel is not set. SoftHSM
// on a disk spends a key's time waiting for its object file's writes (on
// this project's ext4 test machine 8 sessions made keys 5-10x faster than
// one); on tmpfs, where it is CPU-bound, 8 cost nothing.
const DefaultTokenParallel = 8

func (s *state) tokenParallel() int {
	if s.cfg.Token.Parallel > 0 {
		return s.cfg.Token.Parallel
	}
	return DefaultTokenParallel
}

// eachKey runs fn for each key in todo, at most s.parallel() at once, and
// reports progress over all of the ceremony's keys. fn talks to KMS
// concurrently; everything it writes (transcript, files, UI) goes through
// s.locked. Every key is tried even when some fail; the failures come back
// as a *BatchError (nil when none failed). A cancelled ctx stops starting
// new keys.
func (s *state) eachKey(ctx context.Context, step string, todo []*keyState, fn func(context.Context, *keyState) error) error {
	return s.eachKeyAfter(ctx, step, todo, nil, fn)
}

// eachKeyAfter is eachKey calling before(k), one key after the other and
// with s.mu held, just before k is handed to fn (an operator confirmation):
// when before fails, no further key starts, the running ones finish, and
// its error is returned. When before says wait, the next key's before
// waits until fn(k) is done: a person typing confirmations sees each import
// done before being asked for the next.
func (s *state) eachKeyAfter(ctx context.Context, step string, todo []*keyState, before func(context.Context, *keyState) (wait bool, err error), fn func(context.Context, *keyState) error) error {
	return s.eachKeyN(ctx, step, s.parallel(), todo, before, fn)
}

// eachKeyN is eachKeyAfter with at most n keys at once.
func (s *state) eachKeyN(ctx context.Context, step string, n int, todo []*keyState, before func(context.Context, *keyState) (wait bool, err error), fn func(context.Context, *keyState) error) error {
	total := len(s.keys)
	done := total - len(todo)
	s.ui.Progress(done, total)
	defer s.groupCommit()()
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	var failed []KeyError
	var stopErr error
	for _, k := range todo {
		// A free slot first: the stop is checked (and the operator asked)
		// just before the key starts, not while the keys before it run.
		sem <- struct{}{}
		if ctx.Err() != nil {
			<-sem
			break
		}
		// The operator may stop between operations: no new key starts,
		// the running ones finish and are recorded.
		if stopErr = s.locked(s.checkStop); stopErr != nil {
			<-sem
			break
		}
		wait := false
		if before != nil {
			if stopErr = s.locked(func() (err error) { wait, err = before(ctx, k); return err }); stopErr != nil {
				<-sem
				break
			}
		}
		wg.Add(1)
		finished := make(chan struct{})
		go func() {
			defer func() { <-sem; wg.Done(); close(finished) }()
			err := fn(ctx, k)
			s.mu.Lock()
			defer s.mu.Unlock()
			if err != nil {
				failed = append(failed, KeyError{k.cfg.Label, err})
				return
			}
			done++
			s.ui.Progress(done, total)
		}()
		if wait {
			<-finished
		}
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if stopErr != nil {
		return stopErr
	}
	if len(failed) == 0 {
		return nil
	}
	if len(failed) == 1 && total == 1 {
		return failed[0].Err
	}
	// In configuration order, for a stable report.
	order := map[string]int{}
	for i, k := range s.keys {
		order[k.cfg.Label] = i
	}
	slices.SortFunc(failed, func(a, b KeyError) int { return order[a.Label] - order[b.Label] })
	return &BatchError{Step: step, Total: total, Failed: failed}
}

// locked runs f with s.mu held: the transcript, the files list and the UI
// are written from one goroutine at a time.
func (s *state) locked(f func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f()
}

// summarizeList joins names for a step summary, shortening long batches.
func summarizeList(names []string) string {
	if len(names) <= 5 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, … and %d more", strings.Join(names[:3], ", "), len(names)-3)
}

// groupCommit lets the keys a batch step runs concurrently share
// checkpoints: a change event (recordChange) still returns only once a
// checkpoint signs it, but one signer signs for every event recorded while
// it was busy, so a batch of N changes costs a few signatures and disk
// flushes instead of N. It returns the function that ends it.
func (s *state) groupCommit() (end func()) {
	g := &commits{cond: sync.NewCond(&s.mu)}
	s.mu.Lock()
	s.commits = g
	s.mu.Unlock()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s.mu.Lock()
		defer s.mu.Unlock()
		for {
			for g.want <= g.done && !g.stop {
				g.cond.Wait()
			}
			if g.want <= g.done {
				return
			}
			if err := s.checkpoint(); err != nil && g.err == nil {
				g.err = err
			}
			g.done = s.tr.Lines()
			g.cond.Broadcast()
		}
	}()
	return func() {
		s.mu.Lock()
		g.stop = true
		g.cond.Broadcast()
		s.mu.Unlock()
		<-stopped
		s.mu.Lock()
		s.commits = nil
		s.mu.Unlock()
	}
}

// commits is the state of a groupCommit, guarded by s.mu.
type commits struct {
	cond *sync.Cond
	// want is the number of transcript lines a checkpoint must cover, done
	// the number the last one covered.
	want, done int
	stop       bool
	err        error
}

// wait returns once a checkpoint covers the first lines lines of the
// transcript (s.mu held).
func (g *commits) wait(lines int) error {
	g.want = max(g.want, lines)
	g.cond.Broadcast()
	for g.done < lines && g.err == nil {
		g.cond.Wait()
	}
	return g.err
}
