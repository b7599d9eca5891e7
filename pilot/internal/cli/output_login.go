package cli

import (
	"io"
)

// loginDoc is the -o json|yaml form of login: when the admin token expires
// and where it was saved. It never holds the token.
type loginDoc struct {
	ExpiresAt string `json:"expires_at" yaml:"expires_at"`
	TokenFile string `json:"token_file" yaml:"token_file"`
}

// logoutDoc is the -o json|yaml form of logout. Revoked says Nexus revoked
// the token; Removed says the token file was deleted; Note explains a
// token that Nexus no longer accepted.
type logoutDoc struct {
	TokenFile string `json:"token_file" yaml:"token_file"`
	Revoked   bool   `json:"revoked" yaml:"revoked"`
	Removed   bool   `json:"removed" yaml:"removed"`
	Note      string `json:"note,omitempty" yaml:"note,omitempty"`
}

// writeLogin renders a successful login.
func writeLogin(w io.Writer, format string, doc loginDoc) error {
	if encoded(format) {
		return writeDoc(w, format, doc)
	}
	return writeLine(w, "logged in until %s (token in %s)", orDash(doc.ExpiresAt), printable(doc.TokenFile))
}

// writeLogout renders the outcome of logout: revoked and removed, removed
// only (Nexus no longer accepted the token), or nothing to do.
func writeLogout(w io.Writer, format string, doc logoutDoc) error {
	if encoded(format) {
		return writeDoc(w, format, doc)
	}
	switch {
	case doc.Revoked:
		return writeLine(w, "logged out: the admin token is revoked and %s is removed", printable(doc.TokenFile))
	case doc.Removed:
		return writeLine(w, "logged out: Nexus no longer accepted the admin token (%s); removed %s", printable(doc.Note), printable(doc.TokenFile))
	case doc.TokenFile == "":
		return writeLine(w, "not logged in")
	default:
		return writeLine(w, "not logged in (no token in %s)", printable(doc.TokenFile))
	}
}
