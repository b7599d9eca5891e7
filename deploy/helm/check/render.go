package check

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"sigs.k8s.io/yaml"
)

// Release names the release a chart is rendered for.
type Release struct {
	Name      string
	Namespace string
}

// LoadChart loads the chart in dir, as `helm install dir` does.
func LoadChart(dir string) (*chart.Chart, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	if err := ch.Validate(); err != nil {
		return nil, fmt.Errorf("chart %s: %w", dir, err)
	}
	return ch, nil
}

// ReadValues parses a values file's YAML.
func ReadValues(data []byte) (map[string]any, error) {
	vals := map[string]any{}
	if err := yaml.Unmarshal(data, &vals); err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	return vals, nil
}

// Render renders the chart for an install of rel with vals over the
// chart's values.yaml: the values are checked against values.schema.json,
// then every template is rendered with missing keys as errors. It returns
// the manifests by template name, without NOTES.txt and empty ones.
func Render(ctx context.Context, ch *chart.Chart, vals map[string]any, rel Release) (map[string]string, error) {
	top, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals, common.ReleaseOptions{
		Name: rel.Name, Namespace: rel.Namespace, Revision: 1, IsInstall: true,
	}, nil, false)
	if err != nil {
		return nil, err
	}
	e := engine.Engine{Strict: true}
	out, err := e.RenderWithContext(ctx, ch, top)
	if err != nil {
		return nil, err
	}
	manifests := map[string]string{}
	for name, text := range out {
		if strings.HasSuffix(name, "NOTES.txt") || strings.TrimSpace(text) == "" {
			continue
		}
		manifests[name] = text
	}
	return manifests, nil
}

// Documents splits rendered manifests into their YAML documents, in the
// order of their template names, each with its template name.
func Documents(manifests map[string]string) []Document {
	var docs []Document
	for _, name := range slices.Sorted(maps.Keys(manifests)) {
		for part := range strings.SplitSeq("\n"+manifests[name], "\n---") {
			if isBlank(part) {
				continue
			}
			docs = append(docs, Document{Template: name, YAML: part})
		}
	}
	return docs
}

// Document is one rendered YAML document.
type Document struct {
	Template string
	YAML     string
}

// isBlank reports whether a YAML document holds only comments and space.
func isBlank(doc string) bool {
	for line := range strings.SplitSeq(doc, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

// errNoKind is returned for a document without apiVersion or kind.
var errNoKind = errors.New("no apiVersion or kind")
