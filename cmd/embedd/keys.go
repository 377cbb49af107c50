package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/embedd/embedd/internal/auth"
	"github.com/embedd/embedd/internal/fsutil"
)

// cmdKeys implements `embedd keys new`: it makes a random API key, prints
// it once, and appends its entry (id, SHA-256, scopes) to the key file
// `serve --auth-keys` reads, creating it 0600. The key itself is stored
// nowhere.
func cmdKeys(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "new" {
		return fmt.Errorf("%w: keys needs new", errUsage)
	}
	fs := newFlagSet("keys new", "")
	id := fs.String("id", "", "name of the key in logs and the audit trail (required)")
	scopes := fs.String("scopes", "", "comma-separated scopes: "+scopeList())
	file := fs.String("file", "", "key file to append the entry to (created 0600); empty prints the entry")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *id == "" || *scopes == "" {
		return fmt.Errorf("%w: keys new needs --id and --scopes", errUsage)
	}
	key, err := auth.NewKey()
	if err != nil {
		return err
	}
	entry := fmt.Sprintf("  - id: %q\n    sha256: %s\n    scopes: [%s]\n", *id, auth.HashKey(key), strings.ReplaceAll(*scopes, ",", ", "))
	if *file == "" {
		fmt.Fprintf(stdout, "key: %s\nentry (under keys:):\n%s", key, entry)
		return nil
	}
	if err := appendEntry(*file, entry); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", key)
	fmt.Fprintf(os.Stderr, "embedd: key %q added to %s; the key above is shown once and stored nowhere\n", *id, *file)
	return nil
}

// appendEntry adds entry to the key file at path, creating it, after
// checking that the result loads; the file is replaced atomically, 0600.
func appendEntry(path, entry string) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("keys:\n")
	} else if data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, entry...)
	if err := auth.CheckKeyFile(data); err != nil {
		return fmt.Errorf("%s: the new entry does not load (nothing written): %w", path, err)
	}
	return fsutil.WriteFile(path, data, 0o600)
}

func scopeList() string {
	var s []string
	for _, x := range auth.Scopes {
		s = append(s, string(x))
	}
	return strings.Join(s, ", ")
}
