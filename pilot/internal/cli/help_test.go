package cli

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// commands returns cmd and all commands below it.
func commands(cmd *cobra.Command) []*cobra.Command {
	all := []*cobra.Command{cmd}
	for _, c := range cmd.Commands() {
		all = append(all, commands(c)...)
	}
	return all
}

func newTestRoot() *cobra.Command {
	inv := &invocation{p: &Program{Version: "test", Getenv: envFunc(nil), Stdin: strings.NewReader(""), Stdout: &strings.Builder{}, Stderr: &strings.Builder{}}}
	return inv.rootCommand()
}

// invocationRE finds where a spike command line starts in an example line.
var invocationRE = regexp.MustCompile(`(^|[\s(|])spike(\s|$)`)

// TestExamples walks the command tree: every command, including help and
// completion, has an Example, and every command without subcommands a Long
// description; each example names its own command; and every spike command
// line in an example resolves to a command and parses (known flags, valid
// argument count).
func TestExamples(t *testing.T) {
	t.Parallel()
	root := newTestRoot()
	var names []string
	for _, cmd := range commands(root) {
		names = append(names, cmd.CommandPath())
		t.Run(cmd.CommandPath(), func(t *testing.T) {
			if strings.TrimSpace(cmd.Example) == "" {
				t.Fatalf("%s has no Example", cmd.CommandPath())
			}
			if !cmd.HasSubCommands() && strings.TrimSpace(cmd.Long) == "" {
				t.Errorf("%s has no Long description", cmd.CommandPath())
			}
			if !strings.Contains(cmd.Example, cmd.CommandPath()) {
				t.Errorf("the Example of %s never runs it:\n%s", cmd.CommandPath(), cmd.Example)
			}
			for line := range strings.SplitSeq(cmd.Example, "\n") {
				loc := invocationRE.FindStringIndex(line)
				if loc == nil {
					continue
				}
				args := shellWords(line[loc[1]:])
				fresh := newTestRoot()
				found, rest, err := fresh.Find(args)
				if err != nil {
					t.Errorf("example %q: %v", line, err)
					continue
				}
				found.InitDefaultHelpFlag()
				found.InitDefaultVersionFlag()
				if err := found.ParseFlags(rest); err != nil {
					t.Errorf("example %q: %v", line, err)
					continue
				}
				if found.Args != nil {
					if err := found.ValidateArgs(found.Flags().Args()); err != nil {
						t.Errorf("example %q: %v", line, err)
					}
				}
			}
		})
	}
	for _, want := range []string{"spike completion", "spike completion bash", "spike completion zsh", "spike completion fish", "spike help",
		"spike secret metadata put", "spike secret rollback", "spike version", "spike login", "spike logout",
		"spike policy put", "spike policy get", "spike policy list", "spike policy delete", "spike policy check",
		"spike audit", "spike audit list", "spike audit verify", "spike audit prune"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("command tree has no %q; it has %q", want, names)
		}
	}
	for _, cmd := range commands(root) {
		if cmd.Name() == "completion" && cmd.Hidden {
			t.Error("the completion command is hidden")
		}
	}
}

// shellWords splits the start of a shell command line into words, with
// single and double quotes, up to the first unquoted |, <, >, ;, & or ).
// Variables and substitutions stay as they are: it is enough to check an
// example's command and flags.
func shellWords(s string) []string {
	var (
		words []string
		word  strings.Builder
		in    bool // inside a word
		quote rune
	)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			word.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case strings.ContainsRune("|<>;&)", r):
			if in {
				words = append(words, word.String())
			}
			return words
		case r == ' ' || r == '\t':
			if in {
				words = append(words, word.String())
				word.Reset()
				in = false
			}
		default:
			word.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, word.String())
	}
	return words
}

// TestCompletePath checks that the PATH argument completes from Nexus's
// directory listing, and that completion without an SVID quietly offers
// nothing.
func TestCompletePath(t *testing.T) {
	t.Parallel()
	url := (&fakeNexus{}).serve(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "directory", args: []string{"__complete", "secret", "get", "apps/"}, want: "apps/demo/\napps/readme\napps/web/\n:6\n"},
		{name: "partial", args: []string{"__complete", "secret", "get", "apps/re"}, want: "apps/readme\n:4\n"},
		{name: "top", args: []string{"__complete", "secret", "list", ""}, want: "apps/\ntop\n:6\n"},
		{name: "second argument", args: []string{"__complete", "secret", "get", "apps/readme", ""}, want: ":4\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, _, code := runSpike(t, url, "", tt.args...)
			if code != 0 {
				t.Fatalf("exit code %d", code)
			}
			if got, _, _ := strings.Cut(stdout, "Completion ended"); got != tt.want {
				t.Errorf("completions = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCompletePathWithoutSVID checks that completion without an SVID
// offers nothing and prints no error.
func TestCompletePathWithoutSVID(t *testing.T) {
	t.Parallel()
	var stdout, stderr strings.Builder
	p := &Program{Version: "test", Getenv: envFunc(nil), Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr}
	if code := p.Run(t.Context(), []string{"__complete", "secret", "get", "apps/"}); code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr.String())
	}
	if got := stdout.String(); got != ":4\n" {
		t.Errorf("completions = %q, want none (%q)", got, ":4\n")
	}
}
