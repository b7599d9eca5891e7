package cli

import "github.com/spf13/cobra"

// addBuiltins adds cobra's help and completion commands to root now rather
// than when it runs, so that they get examples and are part of the tree
// that tests walk. Neither needs an SVID or Nexus.
func addBuiltins(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, cmd := range root.Commands() {
		switch cmd.Name() {
		case "help":
			cmd.Example = "  spike help secret put\n  spike help secret metadata"
		case "completion":
			cmd.Example = completionExamples["bash"] + "\n" + completionExamples["zsh"] + "\n" + completionExamples["fish"]
			for _, shell := range cmd.Commands() {
				shell.Example = completionExamples[shell.Name()]
			}
		}
	}
}

// completionExamples show how to load each shell's completion script.
var completionExamples = map[string]string{
	"bash": `  source <(spike completion bash)
  spike completion bash > /etc/bash_completion.d/spike`,
	"zsh": `  spike completion zsh > "${fpath[1]}/_spike"`,
	"fish": `  spike completion fish | source
  spike completion fish > ~/.config/fish/completions/spike.fish`,
	"powershell": `  spike completion powershell | Out-String | Invoke-Expression`,
}
