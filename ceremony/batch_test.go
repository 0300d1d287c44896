package ceremony

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestEachKey: at most kms.parallel keys at once, every key tried even when
// some fail, failures reported in configuration order as a *BatchError.
func TestEachKey(t *testing.T) {
	s := &state{cfg: &Config{KMS: KMSConfig{Parallel: 3}}, ui: &quietUI{}}
	for i := range 10 {
		s.keys = append(s.keys, &keyState{cfg: &KeyConfig{Label: fmt.Sprintf("k%d", i)}})
	}
	var running, peak, calls atomic.Int32
	err := s.eachKey(context.Background(), "import", s.keys, func(ctx context.Context, k *keyState) error {
		calls.Add(1)
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		if k.cfg.Label == "k7" || k.cfg.Label == "k2" {
			return errors.New("KMS said no")
		}
		return nil
	})
	var be *BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 || be.Failed[0].Label != "k2" || be.Failed[1].Label != "k7" {
		t.Fatalf("eachKey = %v, want k2 and k7 failed", err)
	}
	if want := "2 of 10 keys failed in import: k2: KMS said no; k7: KMS said no"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if calls.Load() != 10 || peak.Load() > 3 || peak.Load() < 2 {
		t.Errorf("%d calls, at most %d at once; want 10 calls, 2 or 3 at once", calls.Load(), peak.Load())
	}
	if !strings.Contains(summarizeList([]string{"a", "b", "c", "d", "e", "f"}), "and 3 more") {
		t.Error("summarizeList does not shorten")
	}
}

// flagUI is a UI whose operator asked to stop once stop is set.
type flagUI struct {
	quietUI
	stop atomic.Bool
}

func (u *flagUI) StopRequested() bool { return u.stop.Load() }

// TestEachKeyStop: a stop asked while keys run lets them finish and starts
// no other, also when the next key was already waiting for a free slot.
func TestEachKeyStop(t *testing.T) {
	for _, parallel := range []int{1, 2} {
		ui := &flagUI{}
		s := &state{cfg: &Config{KMS: KMSConfig{Parallel: parallel}}, ui: ui}
		for i := range 5 {
			s.keys = append(s.keys, &keyState{cfg: &KeyConfig{Label: fmt.Sprintf("k%d", i)}})
		}
		var calls, finished atomic.Int32
		err := s.eachKey(context.Background(), "kms-keys", s.keys, func(ctx context.Context, k *keyState) error {
			calls.Add(1)
			ui.stop.Store(true) // asked while this key's call runs
			time.Sleep(20 * time.Millisecond)
			finished.Add(1)
			return nil
		})
		if n := calls.Load(); !errors.Is(err, ErrInterrupted) || n < 1 || n > int32(parallel) || finished.Load() != n {
			t.Errorf("parallel %d: %v after %d keys started and %d finished; want ErrInterrupted after at most %d, all finished", parallel, err, n, finished.Load(), parallel)
		}
	}
}
