package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"text/template"
)

// maxRenderBytes bounds a rendered file.
const maxRenderBytes = 4 << 20

// errTooLarge is a render that outgrew maxRenderBytes.
var errTooLarge = fmt.Errorf("the rendered file is larger than %d bytes", maxRenderBytes)

// reader reads secrets for one render pass, each path once, and records
// the paths the templates asked for.
type reader struct {
	secrets Secrets
	cache   map[string]map[string]string
	errs    map[string]error
	paths   map[string]bool
}

func newReader(s Secrets) *reader {
	return &reader{secrets: s, cache: map[string]map[string]string{}, errs: map[string]error{}, paths: map[string]bool{}}
}

// data returns the secret at path (its latest version).
func (r *reader) data(ctx context.Context, path string) (map[string]string, error) {
	if path == "" {
		return nil, errors.New("the secret path is empty")
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
	return d, nil
}

// render executes t's template against the secrets, failing on any
// secret or key that is missing: an error never becomes an empty file.
func (r *reader) render(ctx context.Context, t Template) ([]byte, error) {
	funcs := template.FuncMap{
		"secret": func(path, key string) (string, error) {
			d, err := r.data(ctx, path)
			if err != nil {
				return "", err
			}
			v, ok := d[key]
			if !ok {
				return "", fmt.Errorf("secret %s has no key %q", path, key)
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
