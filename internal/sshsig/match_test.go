package sshsig

import (
	"strings"
	"testing"
)

// TestMatch follows OpenSSH's match_pattern_list: '*' and '?' wildcards,
// and a matching '!' pattern denies whatever else matches.
func TestMatch(t *testing.T) {
	tests := []struct {
		patterns string
		s        string
		want     bool
	}{
		{"alice", "alice", true},
		{"alice", "alicex", false},
		{"*", "mallory", true},
		{"!mallory,*", "mallory", false},
		{"*,!mallory", "mallory", false},
		{"!mallory,*", "alice", true},
		{"!mallory", "alice", false},
		{"a?ice", "alice", true},
		{"a*e", "alice", true},
		{"[a]lice", "alice", false},
		{"*@example.com", "alice@example.com", true},
		{"*@example.com", "alice@example.org", false},
		{"alice,", "alice", true},
		{"alice,", "", false},
		{",alice", "", true},
		{"!!alice", "!alice", false},
		{"a*," + strings.Repeat("x", 1023), "alice", false},
		{"a*," + strings.Repeat("x", 1022), "alice", true},
	}
	for _, tt := range tests {
		if got := match(tt.patterns, tt.s); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.patterns, tt.s, got, tt.want)
		}
	}
}
