package registry

import (
	"strings"
	"unicode/utf8"
)

// maxPatternStars is the most '*' characters a wildcard role may hold, each '*' of a '**'
// counted (client-protocol.md §2.5). A pattern over the limit grants nothing [R].
const maxPatternStars = 5

// anyChar stands for '?' inside a compiled chunk. 0xFF never occurs in UTF-8, and
// compilePattern rejects patterns that contain it, so it cannot be confused with a
// literal byte.
const anyChar = 0xFF

// pattern is a compiled wildcard role pattern: chunks[0] star[0] chunks[1] … chunks[k].
// A chunk is literal bytes and anyChar; it matches a fixed number of characters. doubles[i]
// says whether the i-th star is '**' (crosses '.') or '*' (does not).
type pattern struct {
	chunks  []string
	doubles []bool
}

// compilePattern parses the <pattern> of a webpubsub.joinLeaveGroups.<pattern> or
// webpubsub.sendToGroups.<pattern> role (client-protocol.md §2.5):
//
//	?   exactly one character except '.'
//	*   zero or more characters except '.'
//	**  zero or more characters, '.' included
//	\   escapes '\', '*' and '?'
//	.   hierarchy separator, matched only by itself and by **
//
// A "character" is a UTF-8 encoded rune. It reports false, and the role then grants
// nothing [R], for more than five '*', a '\' that does not precede '\', '*' or '?', and
// a byte 0xFF. A run of three or more '*' reads as '**' followed by '*' and so on.
func compilePattern(s string) (pattern, bool) {
	var (
		p     pattern
		chunk strings.Builder
		stars int
	)
	for i := 0; i < len(s); i++ {
		switch b := s[i]; b {
		case '\\':
			if i+1 == len(s) {
				return pattern{}, false
			}
			switch next := s[i+1]; next {
			case '\\', '*', '?':
				chunk.WriteByte(next)
				i++
			default:
				return pattern{}, false
			}
		case '?':
			chunk.WriteByte(anyChar)
		case '*':
			double := i+1 < len(s) && s[i+1] == '*'
			if double {
				i++
				stars += 2
			} else {
				stars++
			}
			if stars > maxPatternStars {
				return pattern{}, false
			}
			p.chunks = append(p.chunks, chunk.String())
			p.doubles = append(p.doubles, double)
			chunk.Reset()
		case anyChar:
			return pattern{}, false
		default:
			chunk.WriteByte(b)
		}
	}
	p.chunks = append(p.chunks, chunk.String())
	return p, true
}

// literal reports whether p has no wildcard at all, and if so the one name it matches.
func (p *pattern) literal() (string, bool) {
	if len(p.chunks) != 1 || strings.IndexByte(p.chunks[0], anyChar) >= 0 {
		return "", false
	}
	return p.chunks[0], true
}

// matchChunk matches chunk against s starting at byte offset at, and returns the offset
// just past the match.
func matchChunk(chunk, s string, at int) (int, bool) {
	for i := 0; i < len(chunk); i++ {
		if chunk[i] == anyChar {
			if at >= len(s) {
				return 0, false
			}
			r, size := utf8.DecodeRuneInString(s[at:])
			if r == '.' {
				return 0, false
			}
			at += size
			continue
		}
		if at >= len(s) || s[at] != chunk[i] {
			return 0, false
		}
		at++
	}
	return at, true
}

// bitsOnStack is how many 64-bit words of position sets match keeps on the stack:
// enough for names of up to 1087 bytes, which covers the 1024-character group limit
// (client-protocol.md §4.4) for ASCII names.
const bitsOnStack = 17

// match reports whether name matches p. It runs in O(len(p.chunks) × len(name) ×
// chunk length) time: a forward pass per chunk over the set of offsets where the previous
// chunk can end, so no input makes it backtrack. It does not allocate for names of up to
// 1087 bytes.
func (p *pattern) match(name string) bool {
	end, ok := matchChunk(p.chunks[0], name, 0)
	if !ok {
		return false
	}
	if len(p.chunks) == 1 {
		return end == len(name)
	}

	// cur holds the offsets at which the previous chunk can end; next collects those at
	// which the current chunk can end.
	words := (len(name) + 1 + 63) / 64
	var curBuf, nextBuf [bitsOnStack]uint64
	var cur, next []uint64
	if words <= bitsOnStack {
		cur, next = curBuf[:words], nextBuf[:words]
	} else {
		cur, next = make([]uint64, words), make([]uint64, words)
	}
	cur[end/64] |= 1 << (end % 64)

	for ci := 1; ci < len(p.chunks); ci++ {
		chunk, double := p.chunks[ci], p.doubles[ci-1]
		clear(next)
		found := false
		// active: some previous end lies at or before q and, for '*', no '.' lies between
		// that end and q, so the star can absorb name[end:q] and the chunk can start at q.
		active := false
		for q := 0; q <= len(name); q++ {
			if cur[q/64]&(1<<(q%64)) != 0 {
				active = true
			}
			if active && (q == len(name) || utf8.RuneStart(name[q])) {
				if e, ok := matchChunk(chunk, name, q); ok {
					next[e/64] |= 1 << (e % 64)
					found = true
				}
			}
			if !double && q < len(name) && name[q] == '.' {
				active = false
			}
		}
		if !found {
			return false
		}
		cur, next = next, cur
	}
	n := len(name)
	return cur[n/64]&(1<<(n%64)) != 0
}
