package bench

// Selector reports whether the OData filter of a fanout's sends (rest-api.md §5)
// selects a connection with this user id ("" for none) and these groups. The bench
// does not read OData itself: its caller supplies the server's reading (cmd/webpubsub
// compiles the filter with the engine's compiler), so the bench expects each filtered
// send exactly where the server delivers it.
type Selector func(userID string, groups []string) bool

// unselectedBits evaluates sel for members 0..n-1 (user bench-<i>, the group groupOf
// gives, if any) and returns a bitmap with bit i set for each member sel does not
// select, or nil when it selects them all. Workers only read the bitmap, so they need
// no filter code.
func unselectedBits(n int, groupOf func(i int) string, sel Selector) []byte {
	var bits []byte
	var groups [1]string
	for i := range n {
		g := groups[:0]
		if name := groupOf(i); name != "" {
			groups[0] = name
			g = groups[:1]
		}
		if sel(benchUser(i), g) {
			continue
		}
		if bits == nil {
			bits = make([]byte, (n+7)/8)
		}
		bits[i/8] |= 1 << (i % 8)
	}
	return bits
}

// bitSet reports whether bit i of bits is set; bits past the end are clear.
func bitSet(bits []byte, i int) bool {
	return i/8 < len(bits) && bits[i/8]&(1<<(i%8)) != 0
}
