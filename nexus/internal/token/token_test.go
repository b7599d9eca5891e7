package token

import (
	"bytes"
	"strings"
	"testing"
)

func TestIDRevealsOnlyAHashPrefix(t *testing.T) {
	t.Parallel()
	const tok = "spike_at_c2VjcmV0LXRva2VuLWJ5dGVz"
	id := ID(tok)
	if !strings.HasPrefix(id, "token:") || len(id) != len("token:")+16 {
		t.Fatalf("ID = %q, want token: and 16 hex digits", id)
	}
	if strings.Contains(id, tok[len("spike_at_"):]) {
		t.Fatalf("ID %q contains the token", id)
	}
	if ID(tok+"x") == id {
		t.Fatal("two tokens share an ID")
	}
	if !bytes.Equal(Lookup(tok), Lookup(tok)) || bytes.Equal(Lookup(tok), Lookup(tok+"x")) {
		t.Fatal("Lookup is not a function of the token alone")
	}
}
