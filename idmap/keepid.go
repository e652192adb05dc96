package idmap

import "fmt"

// KeepID returns the mapping of a --userns=keep-id container relative to
// unroot's own namespace, whose ids are laid out by Build: 0 is the caller
// and 1..size-1 are the subordinate ids. Container id `id` (the caller's
// uid or gid) becomes 0 there, i.e. the caller; container ids 0..id-1 take
// the first subordinate ids and id+1.. the remaining ones. Composed with
// the namespace's mapping this is Podman's keep-id layout: container id U
// is host id U, every other id a subordinate one. nil when the namespace
// has no subordinate ids (a single-id mapping has nothing to put at 0).
func KeepID(id uint32, size uint64) []Range {
	if size < 2 {
		return nil
	}
	sub := size - 1
	below := uint64(id)
	if below > sub {
		below = sub
	}
	var m []Range
	if below > 0 {
		m = append(m, Range{ContainerID: 0, HostID: 1, Size: uint32(below)})
	}
	m = append(m, Range{ContainerID: id, HostID: 0, Size: 1})
	if rest := sub - below; rest > 0 {
		// Container ids end at 2^32-1 (exclusive): never overflow.
		if max := uint64(1<<32-1) - (uint64(id) + 1); rest > max {
			rest = max
		}
		if rest > 0 {
			m = append(m, Range{ContainerID: id + 1, HostID: uint32(below + 1), Size: uint32(rest)})
		}
	}
	return m
}

// Compose maps inner (container ids -> ids of the namespace outer maps
// from) through outer (those ids -> host ids): the host ids a nested
// namespace ends up with. It fails when inner uses an id outer does not map.
func Compose(inner, outer []Range) ([]Range, error) {
	var out []Range
	for _, r := range inner {
		off := uint64(0)
		for off < uint64(r.Size) {
			x := uint64(r.HostID) + off
			var o *Range
			for i := range outer {
				if x >= uint64(outer[i].ContainerID) && x < uint64(outer[i].ContainerID)+uint64(outer[i].Size) {
					o = &outer[i]
					break
				}
			}
			if o == nil {
				return nil, fmt.Errorf("id %d is not mapped in the outer namespace", x)
			}
			n := uint64(o.ContainerID) + uint64(o.Size) - x
			if left := uint64(r.Size) - off; n > left {
				n = left
			}
			out = append(out, Range{
				ContainerID: r.ContainerID + uint32(off),
				HostID:      o.HostID + uint32(x-uint64(o.ContainerID)),
				Size:        uint32(n),
			})
			off += n
		}
	}
	return out, nil
}
