package cli

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spike-dev/spike/pilot/internal/agent"
	"github.com/spike-dev/spike/shared/client"
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
			log := slog.New(slog.NewTextHandler(inv.p.Stderr, nil))
			s, err := inv.agentSecrets(cmd.Context(), log)
			if err != nil {
				return err
			}
			defer s.c.Close()
			return agent.New(cfg, s, log, inv.p.Stderr).Run(cmd.Context())
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

// agentSecrets returns the secrets of the Nexus the configuration names,
// read with the shared workload client (shared/client), the caller's SVID
// and no admin token; the caller closes its client.
func (inv *invocation) agentSecrets(ctx context.Context, log *slog.Logger) (clientSecrets, error) {
	cfg, err := inv.config()
	if err != nil {
		return clientSecrets{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, svidWait)
	defer cancel()
	c, err := client.New(sctx, client.Config{NexusURL: cfg.NexusURL, NexusID: cfg.NexusID, SVID: cfg.SVID})
	if err != nil {
		return clientSecrets{}, svidError("the agent", cfg.SVID, sctx.Err() != nil && ctx.Err() == nil, err)
	}
	return clientSecrets{c: c, url: cfg.NexusURL, timeout: inv.timeout, log: log}, nil
}

// clientSecrets gives the agent the secrets of one Nexus through
// shared/client, the client every workload uses: the agent declares what it
// needs (agent.Secrets), and this adapts the client's Get and Watch to it.
type clientSecrets struct {
	c       *client.Client
	url     string
	timeout time.Duration
	log     *slog.Logger
}

// Get reads the latest version of the secret at path, under the --timeout
// deadline.
func (s clientSecrets) Get(ctx context.Context, path string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	secret, err := s.c.Get(ctx, path)
	if err != nil {
		return nil, transportError(plainError{err}, s.url, s.timeout)
	}
	return secret.Data, nil
}

// Watch watches the secrets under prefix from cursor, without their data
// (the agent reads what its templates need), with Nexus's heartbeats: they
// tell the agent that the watch is established and alive. The client
// reconnects by itself from the last cursor (and logs it); the stream
// fails only for what reconnecting cannot fix.
func (s clientSecrets) Watch(ctx context.Context, prefix, cursor string) (agent.Stream, error) {
	next, stop := iter.Pull2(s.c.Watch(ctx, prefix, client.WatchOptions{Cursor: cursor, Heartbeats: true, Logger: s.log}))
	return &clientStream{next: next, stop: stop}, nil
}

// clientStream reads a client's watch one event at a time.
type clientStream struct {
	next func() (client.Event, error, bool)
	stop func()
}

func (w *clientStream) Receive() ([]string, string, error) {
	ev, err, ok := w.next()
	switch {
	case !ok:
		return nil, "", errors.New("the watch ended")
	case errors.Is(err, client.ErrCursorExpired):
		return nil, "", fmt.Errorf("%w: %w", agent.ErrCursorExpired, plainError{err})
	case errors.Is(err, client.ErrUnimplemented):
		return nil, "", fmt.Errorf("this Nexus cannot stream changes (%w)", plainError{err})
	case err != nil:
		return nil, "", plainError{err}
	case ev.Kind == client.KindHeartbeat:
		return nil, ev.Cursor, nil
	}
	return []string{ev.Path}, ev.Cursor, nil
}

func (w *clientStream) Close() error {
	w.stop()
	return nil
}

// plainError reads as the error under a *client.Error (Nexus's code and
// message), as spike's other errors do: the agent's own messages already
// name the secret. errors.Is and errors.As still find the client's error
// and its kind.
type plainError struct{ err error }

func (e plainError) Error() string {
	var ce *client.Error
	if errors.As(e.err, &ce) {
		if u := ce.Unwrap(); u != nil {
			return u.Error()
		}
	}
	return e.err.Error()
}

func (e plainError) Unwrap() error { return e.err }
