// Package agent keeps files rendered from templates that read secrets, in
// the manner of Vault Agent and consul-template: it renders each template
// (Go text/template with the secret and secretData functions), writes the
// files that changed atomically, runs each changed file's reload command
// or signal once, and renders again when Nexus reports a change to a
// secret the templates read (falling back to polling while it cannot).
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Secrets is what the agent needs of Nexus.
type Secrets interface {
	// Get returns the data of the latest version of the secret at path.
	Get(ctx context.Context, path string) (map[string]string, error)
	// Watch opens a stream of the changes to the secrets under prefix,
	// after cursor (empty: from now on). The stream may reconnect by
	// itself; it should deliver Nexus's heartbeats (as batches without
	// paths), which tell the agent that it is watching.
	Watch(ctx context.Context, prefix, cursor string) (Stream, error)
}

// Stream is an open watch.
type Stream interface {
	// Receive blocks for the next batch of changes: the paths that
	// changed (none in a heartbeat) and the cursor to resume after them.
	Receive() (paths []string, cursor string, err error)
	// Close ends the stream.
	Close() error
}

// ErrCursorExpired is returned by a Stream whose cursor is older than the
// changes Nexus retains: the agent starts afresh and renders everything.
var ErrCursorExpired = errors.New("the watch cursor is older than the changes Nexus retains")

// Agent renders a configuration's templates and keeps them current.
type Agent struct {
	cfg     Config
	secrets Secrets
	log     *slog.Logger
	// out receives the output of reload commands.
	out io.Writer

	// minBackoff and maxBackoff bound the wait between attempts to watch.
	minBackoff, maxBackoff time.Duration

	// heard says that the watch delivered something (a heartbeat at
	// least) since pollWhileSilent last looked.
	heard atomic.Bool

	mu     sync.Mutex
	paths  map[string]bool    // the secrets the templates read
	prefix string             // the prefix the open watch covers
	cancel context.CancelFunc // ends the open watch
}

// New returns an agent for cfg that reads secrets from s, logs to log and
// passes the output of reload commands to out.
func New(cfg Config, s Secrets, log *slog.Logger, out io.Writer) *Agent {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = defaultPoll
	}
	return &Agent{cfg: cfg, secrets: s, log: log, out: out, minBackoff: time.Second, maxBackoff: 5 * time.Minute}
}

// Run renders every template and, unless the configuration says once,
// keeps the files current until ctx ends. The first render must succeed
// for every template: an error is returned and no command runs for a
// template that failed. Later failures are logged and the old file kept;
// so are failed reloads, except with once, where they are returned.
func (a *Agent) Run(ctx context.Context) error {
	renderErr, reloadErr := a.pass(ctx)
	switch {
	case renderErr != nil:
		return renderErr
	case a.cfg.Once:
		return reloadErr
	case reloadErr != nil:
		// The process to reload may not have started yet.
		a.log.Warn("reload failed", "error", reloadErr)
	}
	trigger := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { a.watch(ctx, trigger) })
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
		}
		// Changes that arrive within Wait render together.
		timer := time.NewTimer(a.cfg.Wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		select {
		case <-trigger:
		default:
		}
		if err := a.Render(ctx); err != nil {
			a.log.Error("render failed; the files keep their last content", "error", err)
		}
	}
}

// Render renders every template once, writes the files whose content
// changed and runs their actions, each distinct action once. It returns
// every error; a template that failed leaves its file as it was.
func (a *Agent) Render(ctx context.Context) error {
	renderErr, reloadErr := a.pass(ctx)
	return errors.Join(renderErr, reloadErr)
}

// pass renders every template and runs the actions of the files that
// changed; it returns the render failures and the reload failures apart.
func (a *Agent) pass(ctx context.Context) (renderErr, reloadErr error) {
	r := newReader(a.secrets)
	var errs, reloadErrs []error
	var actions []action
	for _, t := range a.cfg.Templates {
		content, err := r.render(ctx, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		same, err := upToDate(t.Destination, content, t.Mode)
		if err != nil {
			errs = append(errs, fmt.Errorf("template %s: %w", t.Name, err))
			continue
		}
		if same {
			continue
		}
		if err := writeFile(t.Destination, content, t.Mode); err != nil {
			errs = append(errs, fmt.Errorf("template %s: %w", t.Name, err))
			continue
		}
		a.log.Info("rendered", "template", t.Name, "bytes", len(content))
		if act := actionOf(t); !act.empty() && !slices.ContainsFunc(actions, act.equal) {
			actions = append(actions, act)
		}
	}
	for _, act := range actions {
		if err := act.run(ctx, a.out); err != nil {
			reloadErrs = append(reloadErrs, fmt.Errorf("reload: %w", err))
		} else {
			a.log.Info("reloaded", act.logAttrs()...)
		}
	}
	a.setPaths(r.paths)
	return errors.Join(errs...), errors.Join(reloadErrs...)
}

// setPaths records the secrets the templates read and restarts the watch
// when it no longer covers them.
func (a *Agent) setPaths(paths map[string]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for p := range a.paths {
		if !paths[p] {
			// A secret a template no longer reads stays watched: its
			// events are harmless renders. Only new paths matter.
			paths[p] = true
		}
	}
	a.paths = paths
	if a.cancel != nil && !strings.HasPrefix(commonPrefix(paths), a.prefix) {
		a.cancel()
	}
}

// watched reports whether any of paths is read by a template.
func (a *Agent) watched(paths []string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.ContainsFunc(paths, func(p string) bool { return a.paths[p] })
}

// watch follows the changes to the secrets the templates read and sends
// on trigger when one may need a render. A failed watch is retried with
// backoff. While the watch says nothing, it triggers every PollInterval:
// a watch that works hears at least Nexus's heartbeats (every 15s by
// default), so this polls only while the watch fails, or reconnects (the
// Secrets' stream may reconnect by itself, without failing).
func (a *Agent) watch(ctx context.Context, trigger chan<- struct{}) {
	notify := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { a.pollWhileSilent(ctx, notify) })
	defer wg.Wait()
	backoff := a.minBackoff
	cursor := ""
	for ctx.Err() == nil {
		received, err := a.follow(ctx, &cursor, notify)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrCursorExpired):
			a.log.Warn("the watch resumed too late to see every change; rendering everything")
			cursor = ""
			notify()
			continue
		case errors.Is(err, errRestart):
			a.log.Info("the templates read new secrets; watching them too")
			cursor = ""
			continue
		}
		if received {
			backoff = a.minBackoff
		}
		a.log.Warn("cannot watch for changes; polling", "error", err, "poll_interval", a.cfg.PollInterval, "retry_watch_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, a.maxBackoff)
	}
}

// errRestart ends a watch whose prefix no longer covers the templates'
// secrets.
var errRestart = errors.New("the watched prefix changed")

// follow opens one watch and reads it until it fails, updating cursor and
// notifying for each batch that touches a template's secret (and for the
// first response of a fresh watch, which may follow changes missed between
// the last render and the watch's start). It reports whether the stream
// delivered anything.
func (a *Agent) follow(ctx context.Context, cursor *string, notify func()) (bool, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	prefix := commonPrefix(a.paths)
	a.prefix, a.cancel = prefix, cancel
	a.mu.Unlock()
	fresh := *cursor == ""
	s, err := a.secrets.Watch(sctx, prefix, *cursor)
	if err != nil {
		return false, fmt.Errorf("watch %q: %w", prefix, err)
	}
	defer s.Close()
	received := false
	for {
		paths, next, err := s.Receive()
		if err != nil {
			if sctx.Err() != nil && ctx.Err() == nil {
				return received, errRestart
			}
			return received, fmt.Errorf("watch %q: %w", prefix, err)
		}
		a.heard.Store(true)
		if next != "" {
			*cursor = next
		}
		if !received {
			// A stream's errors come with its first response, so only
			// now is the agent watching.
			a.log.Info("watching for changes", "prefix", prefix, "resumed", !fresh)
		}
		if (fresh && !received) || a.watched(paths) {
			notify()
		}
		received = true
	}
}

// pollWhileSilent notifies at the end of every PollInterval in which the
// watch delivered nothing, until ctx ends.
func (a *Agent) pollWhileSilent(ctx context.Context, notify func()) {
	tick := time.NewTicker(a.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if !a.heard.Swap(false) {
				notify()
			}
		}
	}
}

// commonPrefix returns the deepest directory (ending in "/", or empty for
// the root) that holds every path.
func commonPrefix(paths map[string]bool) string {
	var prefix string
	for i, p := range slices.Sorted(maps.Keys(paths)) {
		dir := path.Dir(p) + "/"
		if dir == "./" {
			dir = ""
		}
		if i == 0 {
			prefix = dir
			continue
		}
		for !strings.HasPrefix(dir, prefix) {
			prefix = parentDir(prefix)
		}
	}
	return prefix
}

// parentDir returns the directory above dir ("a/b/" → "a/", "a/" → "").
func parentDir(dir string) string {
	i := strings.LastIndex(strings.TrimSuffix(dir, "/"), "/")
	if i < 0 {
		return ""
	}
	return dir[:i+1]
}
