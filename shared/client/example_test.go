package client_test

// Most of these examples need a running SPIKE and an SVID, so they are
// compiled but not run (no Output comment); e2e/client_test.go runs the
// same calls against a real stack, from a module outside the workspace
// too. ExampleConfigFromEnv needs neither and runs with the tests.

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/spike-dev/spike/shared/client"
	"github.com/spike-dev/spike/shared/svid"
)

// A workload reads one key of its secret, configured by the environment
// (SPIKE_NEXUS_URL, and SPIFFE_ENDPOINT_SOCKET or the SPIKE_SVID_* files).
func Example() {
	if err := readUser(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func readUser(ctx context.Context) error {
	cfg, err := client.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	c, err := client.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()

	s, err := c.Get(ctx, "apps/web/db")
	switch {
	case errors.Is(err, client.ErrPermissionDenied):
		id, _ := c.ID()
		return fmt.Errorf("no policy grants %s read on apps/web/db: %w", id, err)
	case errors.Is(err, client.ErrNotFound):
		return errors.New("no secret at apps/web/db")
	case err != nil:
		return err
	}
	fmt.Fprintln(os.Stdout, "connecting as", s.Data["user"])
	return nil
}

// The configuration a workload's environment gives: here a map stands in
// for os.Getenv. The Nexus ID follows from the trust domain, and a missing
// SVID is reported before anything is dialled.
func ExampleConfigFromEnv() {
	env := map[string]string{
		"SPIKE_NEXUS_URL":        "https://nexus.example.org:8553",
		"SPIKE_TRUST_DOMAIN":     "example.org",
		"SPIFFE_ENDPOINT_SOCKET": "unix:///run/spire/agent.sock",
	}
	cfg, err := client.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.NexusURL)
	fmt.Println(cfg.NexusID)
	fmt.Println(cfg.SVID.EndpointSocket)

	delete(env, "SPIFFE_ENDPOINT_SOCKET")
	_, err = client.ConfigFromEnv(func(k string) string { return env[k] })
	fmt.Println(err)
	// Output:
	// https://nexus.example.org:8553
	// spiffe://example.org/spike/nexus
	// unix:///run/spire/agent.sock
	// no SVID configured: set SPIFFE_ENDPOINT_SOCKET, or SPIKE_SVID_CERT, SPIKE_SVID_KEY and SPIKE_TRUST_BUNDLE
}

// A client with explicit configuration: an SVID from the SPIRE agent, a
// Nexus behind a service name.
func ExampleNew() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{
		NexusURL: "https://nexus.spike.svc:8553",
		SVID:     svid.Config{EndpointSocket: "unix:///run/spire/agent.sock"},
	})
	if err != nil {
		log.Fatal(err)
	}
	// ... c.Get, c.Put, c.Watch for the life of the program, then:
	_ = c.Close()
}

// A check-and-set write: it succeeds only if the secret is still at the
// version that was read.
func ExampleClient_Put() {
	if err := setColor(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func setColor(ctx context.Context) error {
	cfg, err := client.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	c, err := client.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()

	s, err := c.Get(ctx, "apps/web/settings")
	if err != nil {
		return err
	}
	s.Data["color"] = "blue"
	v, err := c.Put(ctx, s.Path, s.Data, client.CAS(s.Version))
	switch {
	case errors.Is(err, client.ErrConflict):
		return errors.New("someone else wrote it first: read again")
	case errors.Is(err, client.ErrOutcomeUnknown):
		return errors.New("no answer: the write may or may not have been applied; read before writing again")
	case err != nil:
		return err
	}
	fmt.Fprintln(os.Stdout, "now at version", v.Version)
	return nil
}

// Every path under a prefix, all pages.
func ExampleClient_List() {
	ctx := context.Background()
	cfg, err := client.ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	paths, err := c.List(ctx, "apps/", client.ListOptions{Recursive: true})
	_ = c.Close()
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range paths {
		fmt.Println(p)
	}
}

// A watcher that reloads its configuration on each new version, and
// remembers where it was so that a restarted program misses nothing.
func ExampleClient_Watch() {
	if err := follow(context.Background(), "/var/lib/web/watch-cursor"); err != nil {
		log.Fatal(err)
	}
}

func follow(ctx context.Context, cursorFile string) error {
	cfg, err := client.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	c, err := client.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()

	cursor, _ := os.ReadFile(cursorFile) // none: from when the stream opens
	for ev, err := range c.Watch(ctx, "apps/web/", client.WatchOptions{Cursor: string(cursor), IncludeData: true}) {
		if errors.Is(err, client.ErrCursorExpired) {
			return errors.New("stopped for too long: read everything again, then watch from now")
		}
		if err != nil {
			return err // permanent: reconnecting would not help
		}
		if ev.Kind == client.KindWritten {
			fmt.Fprintln(os.Stdout, ev.Path, "now has version", ev.Versions, "with", len(ev.Data), "keys")
		}
		if ev.Cursor != "" {
			if err := os.WriteFile(cursorFile, []byte(ev.Cursor), 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}
