package transcripts

import "strings"

// WordCount is how many bytes of the seal payload's SHA-256 the read-aloud
// fingerprint shows: 16 bytes, 128 bits, so that nobody can grind a second
// transcript to match it.
const WordCount = 16

// Words encodes b with the PGP word list: bytes at even positions as
// two-syllable words, at odd positions as three-syllable words, separated by
// spaces. A dropped, doubled or swapped word changes the rhythm, which is
// why the lists alternate.
func Words(b []byte) string {
	ws := make([]string, len(b))
	for i, c := range b {
		if i%2 == 0 {
			ws[i] = evenWords[c]
		} else {
			ws[i] = oddWords[c]
		}
	}
	return strings.Join(ws, " ")
}
