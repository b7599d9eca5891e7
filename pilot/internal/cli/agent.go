package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/spike-dev/spike/pilot/internal/agent"
	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

func (inv *invocation) agentCommand() *cobra.Command {
	var file string
	var once, check bool
	cmd := &cobra.Command{
		Use:   "agent --config FILE [--once | --check]",
		Short: "Keep files rendered from templates that read secrets",
		Long: `agent renders the templates of a configuration file (YAML) to files and
keeps them current: when Nexus reports a change to a secret a template
reads, it renders again, replaces each file whose content changed
atomically (mode 0600 unless the template allows its group to read it)
and then runs that template's command (without a shell) or signals the
process in its pid file, once however many of its secrets changed
together. A file whose content did not change is neither written nor
reloaded.

Templates are Go text/template with two functions:
  {{ secret "apps/web/db" "pass" }}   one key of a secret's latest version
  {{ secretData "apps/web/db" }}      all its keys, as a map
A missing secret or key fails the render (naming the template, the secret
and the key): the file keeps its last content, and the first render of a
template must succeed or the agent exits with an error. A reload that
fails is logged (with --once, the agent exits with an error).

The agent watches the secrets its templates read (WatchSecrets), resuming
where it stopped after a reconnect; while it cannot watch, it says so in
its log and renders every poll_interval. --once (or once: true) renders
once, runs the reloads of the files that changed and exits. --check only
validates the configuration and exits 0 when every file exists (for a
container's health check; it talks to no one).

Configuration:
  once: false            # exit after the first render
  wait: 250ms            # changes within this time render together
  poll_interval: 30s     # how often to render while Nexus cannot be watched
  templates:
    - source: db.tmpl    # or contents: |  (the template inline)
      destination: /run/secrets/db.env
      mode: "0600"       # the default; "0640" lets the group read it
      command: [/usr/local/bin/app-reload, --db]  # argv, no shell
      command_timeout: 30s
      pid_file: /run/app.pid   # signal this process
      signal: HUP              # HUP (default), INT, TERM, QUIT, USR1, USR2, WINCH
Relative paths are relative to the configuration file's directory; every
destination's directory must exist. Unknown keys are errors.

The secrets are read with the caller's own SVID and no admin token: a
workload needs a policy that lets it read them. Secret values never appear
in the log.`,
		Example: `  spike agent --config /etc/spike/agent.yaml
  spike agent --config agent.yaml --once
  spike agent --config /etc/spike/agent.yaml --check`,
		Args: noArgs,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if inv.output == "nce" { // -once, read as -o nce
				return usageErrorf(cmd, "-once: use --once (two dashes)")
			}
			return inv.checkFlags(cmd)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErrorf(cmd, "--config FILE is required")
			}
			cfg, err := agent.LoadConfig(file)
			if err != nil {
				return err
			}
			if check {
				return agent.CheckRendered(cfg)
			}
			cfg.Once = cfg.Once || once
			n, err := inv.connectWithoutToken(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			log := slog.New(slog.NewTextHandler(inv.p.Stderr, nil))
			return agent.New(cfg, nexusSecrets{inv: inv, n: n}, log, inv.p.Stderr).Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "the agent's configuration `file` (YAML)")
	cmd.Flags().BoolVar(&once, "once", false, "render once, run the reloads and exit")
	cmd.Flags().BoolVar(&check, "check", false, "only check the configuration and that every file has been rendered (a health check; talks to no one)")
	cmd.MarkFlagsMutuallyExclusive("once", "check")
	cmd.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		for _, name := range []string{"config", "check"} {
			if strings.Contains(err.Error(), "in -"+name) {
				return usageErrorf(cmd, "-%s: use --%s (two dashes)", name, name)
			}
		}
		return &usageError{command: cmd.CommandPath(), err: err}
	})
	return cmd
}

// nexusSecrets gives the agent the secrets of one Nexus.
type nexusSecrets struct {
	inv *invocation
	n   *nexus
}

// Get reads the latest version of the secret at path.
func (s nexusSecrets) Get(ctx context.Context, path string) (map[string]string, error) {
	var data map[string]string
	err := s.inv.call(ctx, s.n, func(ctx context.Context) error {
		resp, err := s.n.secrets.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: path}))
		if err == nil {
			data = resp.Msg.GetSecret().GetData()
		}
		return err
	})
	return data, err
}

// Watch opens a WatchSecrets stream without the data of the changes: the
// agent reads what its templates need.
func (s nexusSecrets) Watch(ctx context.Context, prefix, cursor string) (agent.Stream, error) {
	stream, err := s.n.secrets.WatchSecrets(ctx, connect.NewRequest(&nexusv1.WatchSecretsRequest{Prefix: prefix, Cursor: cursor}))
	if err != nil {
		return nil, watchError(err)
	}
	return watchStream{stream}, nil
}

type watchStream struct {
	s *connect.ServerStreamForClient[nexusv1.WatchSecretsResponse]
}

func (w watchStream) Receive() ([]string, string, error) {
	if !w.s.Receive() {
		if err := w.s.Err(); err != nil {
			return nil, "", watchError(err)
		}
		return nil, "", errors.New("nexus ended the watch")
	}
	msg := w.s.Msg()
	paths := make([]string, 0, len(msg.GetEvents()))
	for _, e := range msg.GetEvents() {
		paths = append(paths, e.GetPath())
	}
	return paths, msg.GetCursor(), nil
}

func (w watchStream) Close() error { return w.s.Close() }

// watchError names what the agent does about a failed watch.
func watchError(err error) error {
	switch connect.CodeOf(err) {
	case connect.CodeOutOfRange:
		return fmt.Errorf("%w: %w", agent.ErrCursorExpired, err)
	case connect.CodeUnimplemented:
		return fmt.Errorf("this Nexus cannot stream changes (%w)", err)
	}
	return err
}
