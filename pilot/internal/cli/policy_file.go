package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// maxPolicyFileBytes bounds a policy file; a policy is a few lines.
const maxPolicyFileBytes = 1 << 20

// Fields of a policy file, by their canonical key.
const (
	fieldName        = "name"
	fieldSPIFFEID    = "spiffe_id_pattern"
	fieldPath        = "path_pattern"
	fieldPermissions = "permissions"
)

// policyKeys maps every key a policy file may hold to its field. The
// timestamps and author that 'policy get -o yaml' prints are accepted and
// ignored (mapped to ""), so that its output can be edited and put back.
var policyKeys = map[string]string{
	"name":              fieldName,
	"spiffe_id_pattern": fieldSPIFFEID,
	"spiffe_id":         fieldSPIFFEID,
	"path_pattern":      fieldPath,
	"path":              fieldPath,
	"permissions":       fieldPermissions,
	"created_at":        "",
	"updated_at":        "",
	"updated_by":        "",
}

const policyFileKeys = "name, spiffe_id_pattern (or spiffe_id), path_pattern (or path) and permissions"

// readPolicyFile reads the policy in file ("-" for stdin). A file that
// cannot be read is a local error; one that does not hold a policy is an
// *inputError.
func readPolicyFile(file string, stdin io.Reader) (*nexusv1.Policy, map[string]bool, error) {
	source := file
	r := stdin
	if file == stdinArg {
		source = "stdin"
	} else {
		f, err := os.Open(file)
		if err != nil {
			return nil, nil, fmt.Errorf("read the policy: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxPolicyFileBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read the policy from %s: %w", source, err)
	}
	if len(data) > maxPolicyFileBytes {
		return nil, nil, inputErrorf("the policy in %s is longer than %d bytes", source, maxPolicyFileBytes)
	}
	return parsePolicy(data, source)
}

// parsePolicy parses a policy written as YAML or JSON (JSON is YAML) and
// returns it with the set of fields that were present. Values are taken as
// they are: Nexus validates them.
func parsePolicy(data []byte, source string) (*nexusv1.Policy, map[string]bool, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, inputErrorf("%s does not hold a policy in YAML or JSON: %s", source, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil, nil, inputErrorf("%s is empty; a policy has %s", source, policyFileKeys)
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return nil, nil, inputErrorf("%s must hold one policy, an object with %s", source, policyFileKeys)
	}

	p := &nexusv1.Policy{}
	present := make(map[string]bool)
	seenAs := make(map[string]string) // field -> key it was given as
	var unknown []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, value := root.Content[i].Value, resolve(root.Content[i+1])
		field, ok := policyKeys[key]
		switch {
		case !ok:
			unknown = append(unknown, fmt.Sprintf("%q", key))
			continue
		case field == "":
			continue
		case present[field] && seenAs[field] == key:
			return nil, nil, inputErrorf("%s: line %d: %s is given twice", source, root.Content[i].Line, key)
		case present[field]:
			return nil, nil, inputErrorf("%s: line %d: %s and %s are the same field; give only one", source, root.Content[i].Line, seenAs[field], key)
		}
		present[field], seenAs[field] = true, key
		var err error
		switch field {
		case fieldName:
			p.Name, err = scalar(value, key)
		case fieldSPIFFEID:
			p.SpiffeIdPattern, err = scalar(value, key)
		case fieldPath:
			p.PathPattern, err = scalar(value, key)
		case fieldPermissions:
			p.Permissions, err = permissions(value, key)
		}
		if err != nil {
			return nil, nil, inputErrorf("%s: %v", source, err)
		}
	}
	if len(unknown) > 0 {
		noun := "field"
		if len(unknown) > 1 {
			noun = "fields"
		}
		return nil, nil, inputErrorf("%s has unknown %s %s; a policy has %s", source, noun, strings.Join(unknown, ", "), policyFileKeys)
	}
	return p, present, nil
}

// resolve follows a YAML alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// scalar returns the text of a scalar node; null is "".
func scalar(n *yaml.Node, key string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("line %d: %s must be a string", n.Line, key)
	}
	if n.Tag == "!!null" {
		return "", nil
	}
	return n.Value, nil
}

// permissions returns a list of permissions: a sequence of strings, or
// one string with a comma-separated list as --perm takes it.
func permissions(n *yaml.Node, key string) ([]string, error) {
	switch n.Kind {
	case yaml.SequenceNode:
		perms := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			s, err := scalar(resolve(item), key+" entry")
			if err != nil {
				return nil, err
			}
			perms = append(perms, s)
		}
		return perms, nil
	case yaml.ScalarNode:
		s, err := scalar(n, key)
		if err != nil || s == "" {
			return nil, err
		}
		var perms permList
		_ = perms.Set(s)
		return perms, nil
	default:
		return nil, fmt.Errorf("line %d: %s must be a list of strings, e.g. [read, list]", n.Line, key)
	}
}

// permList is the value of a --perm flag: comma-separated permissions,
// which may also be given by repeating the flag. Entries are trimmed but
// not checked: Nexus says which permissions exist.
type permList []string

func (l *permList) String() string { return strings.Join(*l, ",") }

// Set adds the permissions in s, e.g. "read,list".
func (l *permList) Set(s string) error {
	for field := range strings.SplitSeq(s, ",") {
		*l = append(*l, strings.TrimSpace(field))
	}
	return nil
}

// Type names the value in the flag's help.
func (l *permList) Type() string { return "permissions" }

// missingFields lists the fields of a policy that were not given, named as
// the user gives them.
func missingFields(present map[string]bool, names map[string]string) []string {
	var missing []string
	for _, field := range []string{fieldSPIFFEID, fieldPath, fieldPermissions} {
		if !present[field] {
			missing = append(missing, names[field])
		}
	}
	return missing
}
