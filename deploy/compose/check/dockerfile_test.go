package check

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDockerfile(t *testing.T) {
	t.Parallel()
	const src = `# a comment
FROM golang:1.26 AS builder
WORKDIR /src
COPY go.work \
     go.work.sum ./
# a comment between lines
RUN go build \
    ./...
FROM --platform=linux/amd64 gcr.io/distroless/static-debian12:nonroot AS app
COPY --from=builder --chown=1:1 /out/app /usr/local/bin/
COPY ["a b", "c"]
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/app", "-x"]
FROM app
entrypoint /bin/app run
`
	df, err := parseDockerfile("Dockerfile", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []*stage{
		{name: "builder", from: "golang:1.26", line: 2, copies: []copyInstr{
			{line: 4, sources: []string{"go.work", "go.work.sum"}, dest: "./"},
		}},
		{name: "app", from: "gcr.io/distroless/static-debian12:nonroot", line: 9, copies: []copyInstr{
			{line: 10, from: "builder", sources: []string{"/out/app"}, dest: "/usr/local/bin/"},
			{line: 11, sources: []string{"a b"}, dest: "c"},
		}, user: "10001:10001", entrypoint: []string{"/usr/local/bin/app", "-x"}},
		{from: "app", line: 14, entrypoint: []string{"/bin/sh", "-c", "/bin/app run"}},
	}
	if diff := cmp.Diff(want, df.stages, cmp.AllowUnexported(stage{}, copyInstr{})); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
	if st := df.stage(""); st != df.stages[2] {
		t.Errorf("stage(\"\") = %+v, want the last stage", st)
	}
	if st := df.stage("nope"); st != nil {
		t.Errorf("stage(\"nope\") = %+v, want nil", st)
	}
	if !df.isStage("builder", 10) || df.isStage("app", 9) || df.isStage("golang:1.26", 20) {
		t.Error("isStage: want builder before line 10, not app at its own line, not an image")
	}
}

func TestParseDockerfileErrors(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		"",
		"COPY a b\n",
		"FROM a AS\n",
		"FROM a\nCOPY onlyone\n",
		"FROM a\nCOPY [\"a\", \n",
	} {
		if _, err := parseDockerfile("Dockerfile", []byte(src)); err == nil {
			t.Errorf("parseDockerfile(%q): no error", src)
		}
	}
}

func TestImagePinned(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ref    string
		pinned bool
	}{
		{"postgres:15", true},
		{"ghcr.io/spiffe/spire-agent:1.13.3", true},
		{"gcr.io/distroless/static-debian12:nonroot", true},
		{"localhost:5000/img:1", true},
		{"busybox@sha256:0123", true},
		{"scratch", true},
		{"postgres", false},
		{"postgres:latest", false},
		{"localhost:5000/img", false},
	}
	for _, tt := range tests {
		if got := imagePinned(tt.ref) == ""; got != tt.pinned {
			t.Errorf("imagePinned(%q) = %q, want pinned %v", tt.ref, imagePinned(tt.ref), tt.pinned)
		}
	}
}

func TestIgnoreFile(t *testing.T) {
	t.Parallel()
	ig := parseIgnoreFile(".dockerignore", []byte(`# comment
.git
/bin
.spike-*
**/*.test
docs
!docs/keep.md
`))
	tests := []struct {
		path     string
		excluded bool
	}{
		{".git", true},
		{".git/config", true},
		{"bin", true},
		{"bin/spike", true},
		{".spike-bench", true},
		{".spike", false},
		{"keeper", false},
		{"keeper/cmd/x.test", true},
		{"x.test", true},
		{"docs/a.md", true},
		{"docs/keep.md", false},
		{"go.work", false},
	}
	for _, tt := range tests {
		if got := ig.excludes(tt.path); got != tt.excluded {
			t.Errorf("excludes(%q) = %v, want %v", tt.path, got, tt.excluded)
		}
	}
	var none *ignoreFile
	if none.excludes("anything") {
		t.Error("no ignore file excludes something")
	}
}
