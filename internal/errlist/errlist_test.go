package errlist

import (
	"errors"
	"fmt"
	"testing"
)

func TestFormat(t *testing.T) {
	var errs []error
	for i := range 7 {
		errs = append(errs, fmt.Errorf("texts[%d]: bad", i))
	}
	if got, want := Format("text", errs[:2]), "2 invalid text(s): texts[0]: bad; texts[1]: bad"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	want := "7 invalid item(s): texts[0]: bad; texts[1]: bad; texts[2]: bad; texts[3]: bad; texts[4]: bad; and 2 more"
	if got := Format("item", errs); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if got := Format("item", []error{errors.New("x")}); got != "1 invalid item(s): x" {
		t.Errorf("got %q", got)
	}
}
