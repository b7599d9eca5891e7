package cli

import (
	"fmt"
	"io"
	"strings"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// initDoc is the -o json|yaml form of init.
type initDoc struct {
	KeyringID string   `json:"keyring_id" yaml:"keyring_id"`
	ExpiresAt string   `json:"expires_at,omitempty" yaml:"expires_at,omitempty"`
	TokenFile string   `json:"token_file,omitempty" yaml:"token_file,omitempty"`
	Shares    []string `json:"shares,omitempty" yaml:"shares,omitempty"`
	Problem   string   `json:"problem,omitempty" yaml:"problem,omitempty"`
}

// rekeyDoc is the -o json|yaml form of rekey.
type rekeyDoc struct {
	KeyringID string   `json:"keyring_id" yaml:"keyring_id"`
	Epoch     uint64   `json:"epoch" yaml:"epoch"`
	Shares    []string `json:"shares,omitempty" yaml:"shares,omitempty"`
}

// writeInit renders the keyring id of a new installation, the shares if
// any, whether the admin is logged in (login is nil when the token was not
// saved) and what to do next; withPassword says whether a password was set.
func writeInit(w io.Writer, format string, r *nexusv1.InitResponse, login *loginDoc, withPassword bool) error {
	if encoded(format) {
		doc := initDoc{KeyringID: r.GetKeyringId(), Shares: shareTexts(r.GetShares()), Problem: r.GetProblem()}
		if login != nil {
			doc.ExpiresAt, doc.TokenFile = login.ExpiresAt, login.TokenFile
		}
		return writeDoc(w, format, doc)
	}
	state := "initialised and unsealed"
	if r.GetProblem() != "" {
		state = "initialised (see the error below)"
	}
	loggedIn := ""
	loginStep := "  - Log in to manage secrets and policies: spike login"
	if !withPassword {
		loginStep = "  - Log in to manage secrets and policies: spike login --shares"
	}
	if login != nil {
		loggedIn = fmt.Sprintf("\nYou are logged in until %s (token in %s).", orDash(login.ExpiresAt), printable(login.TokenFile))
		loginStep = strings.Replace(loginStep, "Log in to manage secrets and policies", "Log in again when the token expires", 1)
	}
	var keep []string
	if withPassword {
		keep = append(keep, `  - Keep the admin password safe. Nobody can recover it, and after all
    Keepers restart SPIKE can only be unsealed with it`+orShares(r)+`:
      echo '<password>' | spike operator unseal`)
	}
	if len(r.GetShares()) > 0 {
		keep = append(keep, `  - Hand out the shares below, one per person, and store them apart.
    After all Keepers restart, any `+fmt.Sprint(threshold(r.GetShares()))+` of them unseal SPIKE:
      spike operator unseal --shares`)
	}
	if err := writeLine(w, `SPIKE is %s. Keyring ID: %s%s

Next steps:
%s
%s
  - Check the state:  spike operator status
  - Store a secret:   spike secret put apps/demo/db user=admin pass=s3cr3t
  - Read it back:     spike secret get apps/demo/db`, state, printable(r.GetKeyringId()), loggedIn, strings.Join(keep, "\n"), loginStep); err != nil {
		return err
	}
	return writeShares(w, r.GetShares())
}

func orShares(r *nexusv1.InitResponse) string {
	if len(r.GetShares()) > 0 {
		return " (or the shares)"
	}
	return ""
}

// writeRekey renders a rekeyed keyring, what no longer opens it, and the
// new shares if any.
func writeRekey(w io.Writer, format string, r *nexusv1.RekeyResponse, withPassword bool) error {
	if encoded(format) {
		return writeDoc(w, format, rekeyDoc{KeyringID: r.GetKeyringId(), Epoch: r.GetEpoch(), Shares: shareTexts(r.GetShares())})
	}
	var now []string
	if withPassword {
		now = append(now, "the new password")
	}
	if len(r.GetShares()) > 0 {
		now = append(now, fmt.Sprintf("a quorum of the new shares (%d of %d)", threshold(r.GetShares()), len(r.GetShares())))
	}
	if err := writeLine(w, `SPIKE is rekeyed. Keyring ID: %s, epoch %d.
From now on only %s opens it (unseal, login): the old
password and every old share are refused. The root keys are unchanged.
A backup of the database taken before now still opens with the old credentials.`,
		printable(r.GetKeyringId()), r.GetEpoch(), strings.Join(now, " or ")); err != nil {
		return err
	}
	return writeShares(w, r.GetShares())
}

// writeShares prints each share once with its label, and how to keep them.
func writeShares(w io.Writer, shares [][]byte) error {
	if len(shares) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, `
Unseal key shares: any %d of these %d unseal SPIKE. They are shown only this
once and Nexus does not keep them. Give each to a different person and store
them apart (never two in one place): fewer than %d reveal nothing, %d are
the key.
`, threshold(shares), len(shares), threshold(shares), threshold(shares))
	for i, s := range shares {
		fmt.Fprintf(&b, "\n  Share %d of %d: %s", i+1, len(shares), printable(string(s)))
	}
	return writeLine(w, "%s", b.String())
}

// shareTexts returns the shares as strings for -o json|yaml.
func shareTexts(shares [][]byte) []string {
	if len(shares) == 0 {
		return nil
	}
	out := make([]string, len(shares))
	for i, s := range shares {
		out[i] = string(s)
	}
	return out
}
