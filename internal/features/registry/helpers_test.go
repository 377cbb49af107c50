package registry

import (
	"errors"
	"flag"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite defaults/features.lock with WriteLock")

// errorLines flattens a joined error into its messages.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, errorLines(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

func loadStrings(t *testing.T, files ...string) (*Registry, error) {
	t.Helper()
	var fs []File
	for i := 0; i+1 < len(files); i += 2 {
		fs = append(fs, File{Name: files[i], Data: []byte(strings.TrimLeft(files[i+1], "\n"))})
	}
	return Load(fs...)
}

func mustLoad(t *testing.T, files ...string) *Registry {
	t.Helper()
	r, err := loadStrings(t, files...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return r
}

// wantErrors checks that err holds exactly want, in order, and that each
// is an *Error matching kind.
func wantErrors(t *testing.T, err error, kind error, want ...string) {
	t.Helper()
	got := errorLines(err)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n  got  %q\n  want %q", got, want)
	}
	if err != nil && !errors.Is(err, kind) {
		t.Errorf("errors.Is(%v, %v) = false", err, kind)
	}
}
