package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// dockerfile is what the checks need to know of a Dockerfile: its stages in
// order. It understands the instructions this repository uses, not every
// corner of the Dockerfile syntax (no heredocs, no escape directive).
type dockerfile struct {
	path   string
	stages []*stage
}

// stage is one FROM section of a Dockerfile.
type stage struct {
	name       string // the AS name, "" when unnamed
	from       string // an image reference or an earlier stage's name
	line       int
	copies     []copyInstr
	user       string   // the last USER, "" when none
	entrypoint []string // the last ENTRYPOINT in exec form
}

// copyInstr is a COPY or ADD instruction.
type copyInstr struct {
	line    int
	from    string // --from: a stage or an image; "" means the build context
	sources []string
	dest    string
}

// parseDockerfile reads the stages of a Dockerfile.
func parseDockerfile(name string, data []byte) (*dockerfile, error) {
	df := &dockerfile{path: name}
	var cur *stage
	for _, ins := range instructions(data) {
		keyword, rest, _ := strings.Cut(ins.text, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(keyword) {
		case "FROM":
			_, args := splitFlags(strings.Fields(rest)) // --platform
			if len(args) != 1 && !(len(args) == 3 && strings.EqualFold(args[1], "AS")) {
				return nil, fmt.Errorf("%s:%d: want FROM IMAGE [AS NAME]", name, ins.line)
			}
			cur = &stage{from: args[0], line: ins.line}
			if len(args) == 3 {
				cur.name = args[2]
			}
			df.stages = append(df.stages, cur)
		case "COPY", "ADD":
			if cur == nil {
				return nil, fmt.Errorf("%s:%d: %s before FROM", name, ins.line, keyword)
			}
			flags, args := splitFlags(strings.Fields(rest))
			if strings.HasPrefix(strings.Join(args, " "), "[") {
				if err := json.Unmarshal([]byte(strings.Join(args, " ")), &args); err != nil {
					return nil, fmt.Errorf("%s:%d: %s: %w", name, ins.line, keyword, err)
				}
			}
			if len(args) < 2 {
				return nil, fmt.Errorf("%s:%d: %s needs a source and a destination", name, ins.line, keyword)
			}
			cur.copies = append(cur.copies, copyInstr{
				line:    ins.line,
				from:    flags["from"],
				sources: args[:len(args)-1],
				dest:    args[len(args)-1],
			})
		case "USER":
			if cur != nil {
				cur.user = rest
			}
		case "ENTRYPOINT":
			if cur == nil {
				continue
			}
			var argv []string
			if err := json.Unmarshal([]byte(rest), &argv); err != nil {
				argv = []string{"/bin/sh", "-c", rest} // shell form
			}
			cur.entrypoint = argv
		}
	}
	if len(df.stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", name)
	}
	return df, nil
}

// stage returns the stage named name, or the last stage when name is "",
// as `docker build --target` does.
func (df *dockerfile) stage(name string) *stage {
	if name == "" {
		return df.stages[len(df.stages)-1]
	}
	for _, st := range df.stages {
		if st.name == name {
			return st
		}
	}
	return nil
}

// isStage reports whether ref names a stage defined before line.
func (df *dockerfile) isStage(ref string, line int) bool {
	for _, st := range df.stages {
		if st.line < line && st.name != "" && st.name == ref {
			return true
		}
	}
	return false
}

// instruction is one logical line of a Dockerfile, continuations joined.
type instruction struct {
	line int // where it starts, from 1
	text string
}

// instructions splits a Dockerfile into its instructions, dropping comments
// and joining lines that end with a backslash.
func instructions(data []byte) []instruction {
	var out []instruction
	var b strings.Builder
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && b.Len() == 0) {
			continue
		}
		if b.Len() == 0 {
			start = n
		}
		cont := strings.HasSuffix(line, `\`)
		b.WriteString(strings.TrimSuffix(line, `\`))
		if cont {
			b.WriteByte(' ')
			continue
		}
		out = append(out, instruction{line: start, text: strings.Join(strings.Fields(b.String()), " ")})
		b.Reset()
	}
	if b.Len() > 0 {
		out = append(out, instruction{line: start, text: strings.Join(strings.Fields(b.String()), " ")})
	}
	return out
}

// splitFlags separates leading --name=value flags from the arguments.
func splitFlags(fields []string) (map[string]string, []string) {
	flags := map[string]string{}
	for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
		k, v, _ := strings.Cut(strings.TrimPrefix(fields[0], "--"), "=")
		flags[k] = v
		fields = fields[1:]
	}
	return flags, fields
}

// imagePinned says why ref, an image reference, is not pinned to a version,
// or "" when it is: a digest, or a tag other than latest.
func imagePinned(ref string) string {
	if ref == "scratch" {
		return ""
	}
	if strings.Contains(ref, "@sha256:") {
		return ""
	}
	slash := strings.LastIndex(ref, "/")
	colon := strings.LastIndex(ref, ":")
	if colon <= slash {
		return "has no tag, which means latest"
	}
	if ref[colon+1:] == "latest" {
		return "is tagged latest"
	}
	return ""
}

// ignoreFile holds the patterns of a .dockerignore file, in order.
type ignoreFile struct {
	path     string
	patterns []ignorePattern
}

type ignorePattern struct {
	segments []string
	negate   bool
}

// parseIgnoreFile reads .dockerignore patterns. Like Docker, it cleans each
// pattern and lets a later pattern override an earlier one.
func parseIgnoreFile(name string, data []byte) *ignoreFile {
	ig := &ignoreFile{path: name}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := ignorePattern{}
		if strings.HasPrefix(line, "!") {
			p.negate = true
			line = strings.TrimSpace(line[1:])
		}
		line = strings.TrimPrefix(path.Clean(filepath.ToSlash(line)), "/")
		p.segments = strings.Split(line, "/")
		ig.patterns = append(ig.patterns, p)
	}
	return ig
}

// excludes reports whether the build context leaves out rel (a slash
// separated path relative to the context): rel, or a directory above it,
// matches the last pattern that matches at all, and that pattern is not a
// negation.
func (ig *ignoreFile) excludes(rel string) bool {
	if ig == nil {
		return false
	}
	parts := strings.Split(path.Clean(rel), "/")
	excluded := false
	for _, p := range ig.patterns {
		for n := 1; n <= len(parts); n++ {
			if matchSegments(p.segments, parts[:n]) {
				excluded = !p.negate
				break
			}
		}
	}
	return excluded
}

// matchSegments matches a path against a pattern segment by segment: "**"
// matches any number of segments, other segments match as path.Match does.
func matchSegments(pattern, parts []string) bool {
	if len(pattern) == 0 {
		return len(parts) == 0
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(parts); i++ {
			if matchSegments(pattern[1:], parts[i:]) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 {
		return false
	}
	ok, err := path.Match(pattern[0], parts[0])
	return err == nil && ok && matchSegments(pattern[1:], parts[1:])
}
