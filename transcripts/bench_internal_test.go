package transcripts

import (
	"crypto/sha256"
	"testing"
)

func benchLines(b *testing.B) [][]byte {
	data := build(b, testScript, ceremonyEvents(), testKey)
	lines := splitLines(data)
	ev := lines[3] // a wrap event
	out := make([][]byte, 10000)
	for i := range out {
		out[i] = ev
	}
	b.SetBytes(int64(len(ev) * len(out)))
	return out
}

func BenchmarkPartScan(b *testing.B) {
	lines := benchLines(b)
	var e eventInfo
	for b.Loop() {
		for _, l := range lines {
			if err := scanEvent(l, &e); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkPartHash(b *testing.B) {
	lines := benchLines(b)
	for b.Loop() {
		for _, l := range lines {
			_ = sha256.Sum256(l)
		}
	}
}
