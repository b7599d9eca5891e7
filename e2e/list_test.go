package e2e_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/spike-dev/spike/shared/identity"
)

// A secret whose every version is deleted is hidden from list, and shown,
// marked, with --deleted (so that there is something to undelete); once
// its versions are destroyed it is gone from both.
func TestListDeleted(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	mustSpike(t, admin, "", "secret", "put", "apps/l/a", "k=1")
	mustSpike(t, admin, "", "secret", "put", "apps/l/b", "k=1")
	mustSpike(t, admin, "", "secret", "put", "apps/l/b", "k=2")
	mustSpike(t, admin, "", "secret", "delete", "apps/l/b", "--versions", "1,2")

	if got := mustSpike(t, admin, "", "secret", "list", "apps/l/"); got != "a\n" {
		t.Errorf("list: %q, want only a", got)
	}
	if got := mustSpike(t, admin, "", "secret", "list", "apps/l/", "--deleted"); got != "a\nb  (deleted)\n" {
		t.Errorf("list --deleted: %q, want a, and b marked deleted", got)
	}
	var doc struct {
		Paths   []string `json:"paths"`
		Deleted []string `json:"deleted"`
	}
	out := mustSpike(t, admin, "", "secret", "list", "-r", "apps/", "--deleted", "-o", "json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil || !slices.Equal(doc.Paths, []string{"apps/l/a", "apps/l/b"}) || !slices.Equal(doc.Deleted, []string{"apps/l/b"}) {
		t.Errorf("list -r --deleted -o json: %s (%v)", out, err)
	}
	mustSpike(t, admin, "", "secret", "undelete", "apps/l/b", "--versions", "2")
	if got := mustSpike(t, admin, "", "secret", "list", "apps/l/", "--deleted"); got != "a\nb\n" {
		t.Errorf("after undelete, list --deleted: %q, want a and b unmarked", got)
	}
	mustSpike(t, admin, "", "secret", "destroy", "apps/l/b", "--versions", "1,2")
	if got := mustSpike(t, admin, "", "secret", "list", "apps/l/", "--deleted"); got != "a\n" {
		t.Errorf("after destroy, list --deleted: %q, want only a", got)
	}
}
