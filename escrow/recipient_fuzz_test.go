package escrow

import (
	"bytes"
	"strings"
	"testing"

	"filippo.io/age"
)

// FuzzParseRecipient: a recipient parses to the kind its text names and
// parses again from its Public form to the same thing; a refused one gets
// a one-line error.
func FuzzParseRecipient(f *testing.F) {
	for _, s := range []string{
		"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH0qHy1yNkNuGk2sFzDa8VPR8ukY8uD0WSVWOCcW1VCk dave@example",
		"  age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n",
		"AGE1QL3Z7HJY54PW3HYWW5AYYFG7ZQGVC7W3J2ELW8ZMRJ2KG5SFN9AQMCAC8P",
		"age1pq1",
		"ssh-rsa AAAA",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecipient(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		if r.Public != strings.TrimSpace(s) {
			t.Fatalf("Public %q is not the trimmed input", r.Public)
		}
		again, err := ParseRecipient(r.Public)
		if err != nil || again.Kind != r.Kind || again.Public != r.Public {
			t.Fatalf("Public %q parses to %+v, %v; first %+v", r.Public, again, err, r)
		}
		if x, ok := r.Recipient.(*age.X25519Recipient); ok && x.String() != r.Public {
			t.Fatalf("X25519 recipient %q prints back as %q", r.Public, x.String())
		}
	})
}

// FuzzParseIdentities: identity files hold secrets, so no error may repeat
// the input; X25519 identities print back to what was read.
func FuzzParseIdentities(f *testing.F) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(id.String() + "\n"))
	f.Add([]byte("# created: 2026-11-26\n# public key: " + id.Recipient().String() + "\n" + id.String() + "\n"))
	f.Add([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----\n"))
	f.Add([]byte("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := ParseIdentities(data, nil)
		if err != nil {
			for _, f := range bytes.Fields(data) {
				if len(f) >= 16 && strings.Contains(err.Error(), string(f)) {
					t.Fatalf("error repeats the input %q: %v", f, err)
				}
			}
			return
		}
		for _, id := range ids {
			x, ok := id.Identity.(*age.X25519Identity)
			if !ok {
				continue
			}
			if !bytes.Contains(bytes.ToUpper(data), []byte(x.String())) {
				t.Fatalf("identity %s is not in the file", x.Recipient())
			}
		}
	})
}
