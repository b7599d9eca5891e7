package agent

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"
)

// maxRenderBytes bounds a rendered file.
const maxRenderBytes = 4 << 20

// errTooLarge is a render that outgrew maxRenderBytes.
var errTooLarge = fmt.Errorf("the rendered file is larger than %d bytes", maxRenderBytes)

// errValueAsArgument refuses a path or key that equals a secret's value:
// sent to Nexus or named in an error, the value would show in errors,
// logs and audit records.
var errValueAsArgument = errors.New("a secret's value was used as a path or key; refused without showing it")

// errWithheld replaces an error of a template that would show a secret's
// value.
var errWithheld = errors.New("the template failed, and its error would show a secret's value: withheld")

// minScrubbedValue is the shortest value looked for in a template's
// errors: a shorter one is too likely to occur by chance (in a line
// number, a function name) to tell anything.
const minScrubbedValue = 4

// maxKeyNames bounds the key names an error lists.
const maxKeyNames = 20

// reader reads secrets for one render pass, each path once, and records
// the paths the templates asked for and the values it read.
type reader struct {
	secrets Secrets
	cache   map[string]map[string]string
	errs    map[string]error
	paths   map[string]bool
	// values are the non-empty values of the secrets read in this pass.
	values [][]byte
}

func newReader(s Secrets) *reader {
	return &reader{secrets: s, cache: map[string]map[string]string{}, errs: map[string]error{}, paths: map[string]bool{}}
}

// data returns the secret at path (its latest version).
func (r *reader) data(ctx context.Context, path string) (map[string]string, error) {
	if path == "" {
		return nil, errors.New("the secret path is empty")
	}
	// Before the path is recorded (and watched) or sent.
	if r.isValue(path) {
		return nil, errValueAsArgument
	}
	r.paths[path] = true
	if d, ok := r.cache[path]; ok {
		return d, nil
	}
	if err := r.errs[path]; err != nil {
		return nil, err
	}
	d, err := r.secrets.Get(ctx, path)
	if err != nil {
		err = fmt.Errorf("secret %s: %w", path, err)
		r.errs[path] = err
		return nil, err
	}
	r.cache[path] = d
	for _, v := range d {
		if v != "" {
			r.values = append(r.values, []byte(v))
		}
	}
	return d, nil
}

// isValue reports whether s equals a value read in this pass (compared in
// constant time).
func (r *reader) isValue(s string) bool {
	found := 0
	for _, v := range r.values {
		found |= subtle.ConstantTimeCompare([]byte(s), v)
	}
	return found == 1
}

// showsValue reports whether msg holds a value read in this pass that is
// long enough to mean something.
func (r *reader) showsValue(msg string) bool {
	for _, v := range r.values {
		if len(v) >= minScrubbedValue && strings.Contains(msg, string(v)) {
			return true
		}
	}
	return false
}

// keyNames lists d's keys, sorted, at most maxKeyNames of them.
func keyNames(d map[string]string) string {
	keys := slices.Sorted(maps.Keys(d))
	if len(keys) == 0 {
		return "it has no keys"
	}
	more := ""
	if len(keys) > maxKeyNames {
		more = fmt.Sprintf(" and %d more", len(keys)-maxKeyNames)
		keys = keys[:maxKeyNames]
	}
	return "its keys are " + strings.Join(keys, ", ") + more
}

// render executes t's template against the secrets, failing on any
// secret or key that is missing: an error never becomes an empty file.
func (r *reader) render(ctx context.Context, t Template) ([]byte, error) {
	funcs := template.FuncMap{
		"secret": func(path, key string) (string, error) {
			// The key is checked before the path is read: a value as
			// the key is refused even when it is the path's first read.
			if r.isValue(key) {
				return "", errValueAsArgument
			}
			d, err := r.data(ctx, path)
			if err != nil {
				return "", err
			}
			if r.isValue(key) {
				return "", errValueAsArgument
			}
			v, ok := d[key]
			if !ok {
				// The key is not echoed: it may be made from a value.
				return "", fmt.Errorf("secret %s has no such key (%s)", path, keyNames(d))
			}
			return v, nil
		},
		"secretData": func(path string) (map[string]string, error) {
			d, err := r.data(ctx, path)
			if err != nil {
				return nil, err
			}
			return maps.Clone(d), nil
		},
	}
	tmpl, err := template.New(t.Name).Option("missingkey=error").Funcs(funcs).Parse(t.Text)
	if err != nil {
		return nil, fmt.Errorf("template %s: %s", t.Name, strings.TrimPrefix(err.Error(), "template: "))
	}
	out := &limitedBuffer{max: maxRenderBytes}
	if err := tmpl.Execute(out, nil); err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, fmt.Errorf("template %s: %w", t.Name, errTooLarge)
		}
		if r.showsValue(err.Error()) {
			return nil, fmt.Errorf("template %s: %w", t.Name, errWithheld)
		}
		return nil, fmt.Errorf("template %s: %s", t.Name, strings.TrimPrefix(err.Error(), "template: "))
	}
	return out.Bytes(), nil
}

// limitedBuffer is a bytes.Buffer that refuses to grow past max.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, errTooLarge
	}
	return b.Buffer.Write(p)
}
