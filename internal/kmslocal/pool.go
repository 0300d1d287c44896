package kmslocal

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// wrappingKeyBits maps each WrappingKeySpec to its RSA modulus size.
var wrappingKeyBits = map[string]int{
	"RSA_2048": 2048,
	"RSA_3072": 3072,
	"RSA_4096": 4096,
}

// keyPool keeps RSA key pairs ready for GetParametersForImport, because
// generating one takes from tens of milliseconds (2048 bits) to seconds
// (4096 bits). Goroutines per size keep its channel full (or, without
// refill, fill it once and end); get falls back to generating on demand
// when the channel is empty.
type keyPool struct {
	ready   map[int]chan *rsa.PrivateKey // nil when the pool is off
	stop    chan struct{}
	once    sync.Once
	filling sync.WaitGroup // the fill goroutines
}

// newKeyPool starts a pool of size key pairs per wrapping key size in bits
// (all sizes if bits is empty); size <= 0 makes a pool that always
// generates on demand. Each size is filled by as many goroutines as there
// are CPUs; with refill false they make size key pairs in all and end.
func newKeyPool(size int, bits []int, refill bool) *keyPool {
	p := &keyPool{stop: make(chan struct{})}
	if size <= 0 {
		return p
	}
	if len(bits) == 0 {
		for _, b := range wrappingKeyBits {
			bits = append(bits, b)
		}
	}
	p.ready = make(map[int]chan *rsa.PrivateKey)
	for _, b := range bits {
		ch := make(chan *rsa.PrivateKey, size)
		p.ready[b] = ch
		left := new(atomic.Int64)
		left.Store(int64(size))
		if refill {
			left = nil
		}
		for range runtime.GOMAXPROCS(0) {
			p.filling.Add(1)
			go p.fill(b, ch, left)
		}
	}
	return p
}

// waitFull returns when every size's pool is full, or ctx is done.
func (p *keyPool) waitFull(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		full := true
		for _, ch := range p.ready {
			full = full && len(ch) == cap(ch)
		}
		if full {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// fill keeps ch full; with left not nil, it makes key pairs only while
// left, shared by the size's goroutines, counts down from the pool's size.
func (p *keyPool) fill(bits int, ch chan *rsa.PrivateKey, left *atomic.Int64) {
	defer p.filling.Done()
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		if left != nil && left.Add(-1) < 0 {
			return
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			// Only a broken system RNG gets here; get reports it on demand.
			return
		}
		select {
		case ch <- k:
		case <-p.stop:
			return
		}
	}
}

// get returns a key pair of the given size, from the pool if one is ready.
func (p *keyPool) get(bits int) (*rsa.PrivateKey, error) {
	select {
	case k := <-p.ready[bits]: // a nil channel never receives
		return k, nil
	default:
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("failed to generate an RSA-%d wrapping key: %w", bits, err)
	}
	return k, nil
}

// put returns an unused key pair to the pool, or drops it if the pool is
// full or off. Only never-published keys may be returned.
func (p *keyPool) put(k *rsa.PrivateKey) {
	select {
	case p.ready[k.N.BitLen()] <- k:
	default:
	}
}

// readyCount returns how many key pairs of the given size are ready.
func (p *keyPool) readyCount(bits int) int { return len(p.ready[bits]) }

// close stops the refill goroutines without waiting for them.
func (p *keyPool) close() { p.once.Do(func() { close(p.stop) }) }
