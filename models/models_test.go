package models

import (
	"io/fs"
	"testing"
)

func TestDefaultIsInTheCatalog(t *testing.T) {
	if _, err := fs.Stat(FS, Default+"/manifest.yaml"); err != nil {
		t.Fatalf("the default model %q has no manifest: %v", Default, err)
	}
}
