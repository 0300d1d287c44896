package secret

import "strings"

// LooksLikeKey reports whether a value given where a public recipient
// belongs is a secret key: an age identity (plain, post-quantum or plugin)
// or a PEM private key. Such a value is never shown nor kept.
func LooksLikeKey(v string) bool {
	u := strings.ToUpper(v)
	return strings.Contains(u, "AGE-SECRET-KEY-") || strings.Contains(u, "AGE-PLUGIN-") || strings.Contains(u, "PRIVATE KEY")
}
