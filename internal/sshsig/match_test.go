package sshsig

import "testing"

// TestMatch follows OpenSSH's match_pattern_list: '*' and '?' wildcards,
// and a matching '!' pattern denies whatever else matches.
func TestMatch(t *testing.T) {
	tests := []struct {
		patterns []string
		s        string
		want     bool
	}{
		{[]string{"alice"}, "alice", true},
		{[]string{"alice"}, "alicex", false},
		{[]string{"*"}, "mallory", true},
		{[]string{"!mallory", "*"}, "mallory", false},
		{[]string{"*", "!mallory"}, "mallory", false},
		{[]string{"!mallory", "*"}, "alice", true},
		{[]string{"!mallory"}, "alice", false},
		{[]string{"a?ice"}, "alice", true},
		{[]string{"a*e"}, "alice", true},
		{[]string{"[a]lice"}, "alice", false},
		{[]string{"*@example.com"}, "alice@example.com", true},
		{[]string{"*@example.com"}, "alice@example.org", false},
	}
	for _, tt := range tests {
		if got := match(tt.patterns, tt.s); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.patterns, tt.s, got, tt.want)
		}
	}
}
