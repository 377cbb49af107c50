package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func testKeyring(t testing.TB, current string, ids ...string) *Keyring {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "current: %s\nkeys:\n", current)
	for _, id := range ids {
		fmt.Fprintf(&b, "  %s: %s\n", id, testKey(id))
	}
	k, err := Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testKey is a fixed key per id, so that two keyrings agree.
func testKey(id string) string {
	k := bytes.Repeat([]byte(id), KeySize/len(id)+1)[:KeySize]
	return b64(k)
}

func TestSealOpen(t *testing.T) {
	k1 := testKeyring(t, "k1", "k1")
	plain := []byte("amount=4242.4242")
	msg, err := k1.Seal(plain, []byte("user42"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(msg, plain) || !IsSealed(msg) || !k1.IsCurrent(msg) {
		t.Fatalf("sealed message %q holds the plaintext or lacks its header", msg)
	}
	if id, _ := KeyID(msg); id != "k1" {
		t.Errorf("KeyID = %q; want k1", id)
	}
	got, err := k1.Open(msg, []byte("user42"))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v; want %q", got, err, plain)
	}
	// Rotation: k2 current, k1 still read.
	k12 := testKeyring(t, "k2", "k1", "k2")
	if got, err := k12.Open(msg, []byte("user42")); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("Open under the rotated keyring = %q, %v", got, err)
	}
	if k12.IsCurrent(msg) {
		t.Error("a k1 message is current in a keyring whose current key is k2")
	}
	msg2, _ := k12.Seal(plain, nil)
	if id, _ := KeyID(msg2); id != "k2" {
		t.Errorf("rotated Seal used %q; want k2", id)
	}
	if s := k12.String(); strings.Contains(s, testKey("k1")) || !strings.Contains(s, "k1") {
		t.Errorf("String = %q; want ids and no key", s)
	}
}

func TestOpenErrors(t *testing.T) {
	k1 := testKeyring(t, "k1", "k1")
	msg, _ := k1.Seal([]byte("4242.4242"), []byte("user42"))
	other, err := New("k1", map[string][]byte{"k1": bytes.Repeat([]byte{7}, KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(msg)
	tampered[len(tampered)-20] ^= 1
	cases := []struct {
		name string
		k    *Keyring
		msg  []byte
		ad   string
		want error
		text string
	}{
		{"missing key", testKeyring(t, "k2", "k2"), msg, "user42", ErrUnknownKey, `key "k1"`},
		{"wrong key", other, msg, "user42", ErrOpen, `key "k1"`},
		{"tampered", k1, tampered, "user42", ErrOpen, `key "k1"`},
		{"moved to another entity", k1, msg, "user43", ErrOpen, `key "k1"`},
		{"truncated", k1, msg[:20], "user42", ErrMalformed, ""},
		{"plaintext", k1, []byte("efst...."), "user42", ErrMalformed, ""},
	}
	for _, c := range cases {
		_, err := c.k.Open(c.msg, []byte(c.ad))
		if !errors.Is(err, c.want) || !strings.Contains(fmt.Sprint(err), c.text) {
			t.Errorf("%s: got %v; want %v naming %s", c.name, err, c.want, c.text)
		}
	}
}

func TestParseErrors(t *testing.T) {
	key := testKey("k1")
	cases := []struct{ name, file, text string }{
		{"no current", "keys:\n  k1: " + key + "\n", "want current"},
		{"current missing", "current: k9\nkeys:\n  k1: " + key + "\n", `current key "k9"`},
		{"short key", "current: k1\nkeys:\n  k1: " + b64([]byte("short")) + "\n", `key "k1" is 5 bytes`},
		{"not base64", "current: k1\nkeys:\n  k1: '!!!'\n", `key "k1" is not standard base64`},
		{"bad id", "current: k/1\nkeys:\n  k/1: " + key + "\n", `key id "k/1"`},
		{"unknown field", "current: k1\nkey:\n  k1: " + key + "\n", "not a YAML mapping"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.file))
		if !errors.Is(err, ErrKeyring) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: got %v; want ErrKeyring naming %s", c.name, err, c.text)
		}
		if err != nil && strings.Contains(err.Error(), key) {
			t.Errorf("%s: the error shows the key: %v", c.name, err)
		}
	}
}

func FuzzOpen(f *testing.F) {
	k := testKeyring(f, "k1", "k1")
	msg, _ := k.Seal([]byte("4242.4242"), nil)
	f.Add(msg)
	f.Add([]byte("esl\x01\x02k1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := k.Open(b, nil)
		if err == nil && !bytes.Equal(out, []byte("4242.4242")) {
			t.Fatalf("forged message opened: %q", out)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("current: k1\nkeys:\n  k1: " + testKey("k1") + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := Parse(b); err == nil {
			if _, err := k.Seal(nil, nil); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
