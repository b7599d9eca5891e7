package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// policyDoc is the -o json|yaml form of a policy. It is also a valid policy
// file for 'spike policy put -f' (which ignores the timestamps).
type policyDoc struct {
	Name            string   `json:"name" yaml:"name"`
	SPIFFEIDPattern string   `json:"spiffe_id_pattern" yaml:"spiffe_id_pattern"`
	PathPattern     string   `json:"path_pattern" yaml:"path_pattern"`
	Permissions     []string `json:"permissions" yaml:"permissions"`
	CreatedAt       string   `json:"created_at,omitempty" yaml:"created_at,omitempty"`
	UpdatedAt       string   `json:"updated_at,omitempty" yaml:"updated_at,omitempty"`
	UpdatedBy       string   `json:"updated_by,omitempty" yaml:"updated_by,omitempty"`
}

// policyListDoc is the -o json|yaml form of the policy list.
type policyListDoc struct {
	Policies        []policyDoc `json:"policies" yaml:"policies"`
	InvalidPolicies []string    `json:"invalid_policies" yaml:"invalid_policies"`
}

// policyDeletedDoc is the -o json|yaml form of a deleted policy.
type policyDeletedDoc struct {
	Name    string `json:"name" yaml:"name"`
	Deleted bool   `json:"deleted" yaml:"deleted"`
}

// accessDoc is the -o json|yaml form of an access check.
type accessDoc struct {
	SPIFFEID    string     `json:"spiffe_id" yaml:"spiffe_id"`
	Path        string     `json:"path" yaml:"path"`
	Permissions []string   `json:"permissions" yaml:"permissions"`
	Grants      []grantDoc `json:"grants" yaml:"grants"`
	Admin       bool       `json:"admin" yaml:"admin"`
}

// grantDoc is what one policy grants in an access check.
type grantDoc struct {
	Policy      string   `json:"policy" yaml:"policy"`
	Permissions []string `json:"permissions" yaml:"permissions"`
}

// invalidPoliciesWarning introduces the stored policies that Nexus could
// not authenticate.
const invalidPoliciesWarning = "stored policies that failed authentication (edited outside SPIKE; they grant nothing)"

func newPolicyDoc(p *nexusv1.Policy) policyDoc {
	return policyDoc{
		Name:            p.GetName(),
		SPIFFEIDPattern: p.GetSpiffeIdPattern(),
		PathPattern:     p.GetPathPattern(),
		Permissions:     nonNil(p.GetPermissions()),
		CreatedAt:       formatTime(p.GetCreatedAt()),
		UpdatedAt:       formatTime(p.GetUpdatedAt()),
		UpdatedBy:       p.GetUpdatedBy(),
	}
}

// writePolicyPut renders the policy that put stored.
func writePolicyPut(w io.Writer, format string, p *nexusv1.Policy) error {
	if encoded(format) {
		return writeDoc(w, format, newPolicyDoc(p))
	}
	return writeLine(w, "stored policy %s", printable(p.GetName()))
}

// writePolicy renders one policy.
func writePolicy(w io.Writer, format string, p *nexusv1.Policy) error {
	if encoded(format) {
		return writeDoc(w, format, newPolicyDoc(p))
	}
	updated := formatTime(p.GetUpdatedAt())
	if by := p.GetUpdatedBy(); by != "" && updated != "" {
		updated += " by " + printable(by)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", printable(p.GetName()))
	fmt.Fprintf(tw, "SPIFFE ID pattern:\t%s\n", printable(p.GetSpiffeIdPattern()))
	fmt.Fprintf(tw, "Path pattern:\t%s\n", printable(p.GetPathPattern()))
	fmt.Fprintf(tw, "Permissions:\t%s\n", orDash(permissionList(p.GetPermissions())))
	fmt.Fprintf(tw, "Created:\t%s\n", orDash(formatTime(p.GetCreatedAt())))
	fmt.Fprintf(tw, "Updated:\t%s\n", orDash(updated))
	return flush(tw)
}

// writePolicies renders the policy list as a table with one policy per row.
func writePolicies(w io.Writer, format string, r *nexusv1.ListPoliciesResponse) error {
	if encoded(format) {
		doc := policyListDoc{Policies: []policyDoc{}, InvalidPolicies: nonNil(r.GetInvalidPolicies())}
		for _, p := range r.GetPolicies() {
			doc.Policies = append(doc.Policies, newPolicyDoc(p))
		}
		return writeDoc(w, format, doc)
	}
	if len(r.GetPolicies()) == 0 {
		return writeLine(w, "no policies")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "NAME\tSPIFFE ID PATTERN\tPATH PATTERN\tPERMISSIONS\n")
	for _, p := range r.GetPolicies() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", printable(p.GetName()), printable(p.GetSpiffeIdPattern()),
			printable(p.GetPathPattern()), orDash(permissionList(p.GetPermissions())))
	}
	return flush(tw)
}

// writeInvalidPolicies warns about stored policies that Nexus could not
// authenticate, whatever the output format: someone changed the database
// behind SPIKE's back, and a person should know.
func writeInvalidPolicies(w io.Writer, names []string) {
	if len(names) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "spike: warning: %s:\n", invalidPoliciesWarning)
	for _, name := range names {
		fmt.Fprintf(&b, "  %s\n", printable(name))
	}
	b.WriteString("Remove them with 'spike policy delete NAME' and put again any that you need.\n")
	_, _ = io.WriteString(w, b.String())
}

// writePolicyDeleted renders a deleted policy.
func writePolicyDeleted(w io.Writer, format, name string) error {
	if encoded(format) {
		return writeDoc(w, format, policyDeletedDoc{Name: name, Deleted: true})
	}
	return writeLine(w, "deleted policy %s", printable(name))
}

// writeAccess renders what a caller may do on a path and which policies
// grant it.
func writeAccess(w io.Writer, format, spiffeID, path string, r *nexusv1.CheckAccessResponse) error {
	if encoded(format) {
		doc := accessDoc{SPIFFEID: spiffeID, Path: path, Permissions: nonNil(r.GetPermissions()), Grants: []grantDoc{}, Admin: r.GetAdmin()}
		for _, g := range r.GetGrants() {
			doc.Grants = append(doc.Grants, grantDoc{Policy: g.GetPolicy(), Permissions: nonNil(g.GetPermissions())})
		}
		return writeDoc(w, format, doc)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s on %s: ", printable(spiffeID), printable(path))
	switch {
	case r.GetAdmin():
		b.WriteString("admin: may do everything with a valid admin token\n")
	case len(r.GetPermissions()) == 0:
		b.WriteString("no access\n")
	default:
		b.WriteString(permissionList(r.GetPermissions()) + "\n")
	}
	for _, g := range r.GetGrants() {
		fmt.Fprintf(&b, "  granted by %s: %s\n", printable(g.GetPolicy()), orDash(permissionList(g.GetPermissions())))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// permissionList joins permissions for a table, quoting any that would
// break the line.
func permissionList(perms []string) string {
	shown := make([]string, len(perms))
	for i, p := range perms {
		shown[i] = printable(p)
	}
	return strings.Join(shown, ", ")
}

// nonNil returns s, or an empty slice for nil, so that documents show []
// rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
