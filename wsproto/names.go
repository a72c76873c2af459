package wsproto

import (
	"unicode"
	"unicode/utf8"
)

// Group name bounds, client-protocol.md §4.4.
const (
	maxGroupNameChars = 1024
	maxHubNameChars   = 128
)

// ValidGroupName reports whether s is a usable group name (client-protocol.md
// §4.4): 1 to 1024 characters, not whitespace only. Characters are counted as
// Unicode code points; invalid UTF-8 is rejected.
func ValidGroupName(s string) bool {
	if s == "" || len(s) > maxGroupNameChars*utf8.UTFMax || !utf8.ValidString(s) {
		return false
	}
	n := 0
	blank := true
	for _, r := range s {
		n++
		if blank && !unicode.IsSpace(r) {
			blank = false
		}
	}
	return n <= maxGroupNameChars && !blank
}

// ValidHubName reports whether s matches ^[A-Za-z][A-Za-z0-9_`,.[\]]{0,127}$,
// the hub name pattern of the official REST SDK (client-protocol.md §1.2).
func ValidHubName(s string) bool {
	if len(s) == 0 || len(s) > maxHubNameChars || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case isLetter(c), c >= '0' && c <= '9':
		case c == '_', c == '`', c == ',', c == '.', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
