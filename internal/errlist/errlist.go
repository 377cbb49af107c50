// Package errlist formats the error of a call that rejects several items at
// once, so every package names bad items the same way:
//
//	3 invalid text(s): texts[0]: ...; texts[4]: ...; texts[7]: ...
//
// At most Show items are spelled out, then "; and N more".
package errlist

import (
	"fmt"
	"strings"
)

// Show is how many items a message spells out.
const Show = 5

// Format returns the message for items, each an error naming its item;
// noun names the kind of item ("text", "item").
func Format[E error](noun string, items []E) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d invalid %s(s): ", len(items), noun)
	for i, it := range items {
		if i == Show {
			fmt.Fprintf(&b, "; and %d more", len(items)-Show)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(it.Error())
	}
	return b.String()
}
