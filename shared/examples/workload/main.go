// Command spike-example-workload shows how a workload reads its secrets from
// SPIKE with the Go client package (shared/client): it proves who it is with
// its own X.509 SVID over mutual TLS and prints the secret. The README
// section "Calling SPIKE from your workload" is built around it.
//
//	spike-example-workload apps/web/db        # the data as a JSON object
//	spike-example-workload apps/web/db pass   # the raw value of one key
//
// The SVID comes from a SPIRE agent when SPIFFE_ENDPOINT_SOCKET is set, and
// from SPIKE_SVID_CERT, SPIKE_SVID_KEY and SPIKE_TRUST_BUNDLE otherwise (the
// files that `make svid` writes). SPIKE_NEXUS_URL, SPIKE_TRUST_DOMAIN and
// SPIKE_NEXUS_ID say which Nexus to call. Exit codes: 0 success, 1 local
// error (usage, no SVID, Nexus unreachable), 2 Nexus refused the request.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/client"
)

// Exit codes.
const (
	exitOK      = 0
	exitLocal   = 1 // usage error or local failure, including an unreachable Nexus
	exitRefused = 2 // Nexus answered with an error
)

const (
	usage = "usage: spike-example-workload PATH [KEY]"
	// callTimeout bounds loading the SVID and the call, retries included.
	callTimeout = 30 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run reads the secret named by args[0] and prints it to stdout, or the
// value of the key args[1]. It returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "spike-example-workload: "+format+"\n", a...)
		return code
	}
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stdout, usage)
		return exitOK
	}
	if len(args) < 1 || len(args) > 2 || args[0] == "" {
		return fail(exitLocal, "expected a secret path and optionally a key\n%s", usage)
	}
	path, key := args[0], ""
	if len(args) == 2 {
		key = args[1]
	}

	cfg, err := client.ConfigFromEnv(getenv)
	if err != nil {
		return fail(exitLocal, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()

	// The workload's identity: from the SPIRE agent, or from PEM files. A
	// long-running workload keeps the client for its whole life: it follows
	// SVID rotations and reuses its connections.
	c, err := client.New(ctx, cfg)
	if err != nil {
		return fail(exitLocal, "load the workload's SVID: %v", err)
	}
	defer c.Close()
	self, err := c.ID()
	if err != nil {
		return fail(exitLocal, "read the workload's SVID: %v", err)
	}

	secret, err := c.Get(ctx, path)
	if err != nil {
		return fail(exitCode(err), "%s", explain(err, self, path, cfg.NexusURL))
	}

	if key == "" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		err = enc.Encode(secret.Data)
	} else {
		value, ok := secret.Data[key]
		if !ok {
			return fail(exitLocal, "%s (version %d) has no key %q", path, secret.Version, key)
		}
		_, err = io.WriteString(stdout, value)
	}
	if err != nil {
		return fail(exitLocal, "write %s: %v", path, err)
	}
	return exitOK
}

// exitCode is exitRefused for an error that came over the wire from Nexus
// and exitLocal for everything else.
func exitCode(err error) int {
	var ce *client.Error
	if errors.As(err, &ce) && ce.Remote {
		return exitRefused
	}
	return exitLocal
}

// explain turns a failed call into sentences that say what happened and
// what the workload's owner can do about it. self is the workload's SPIFFE
// ID and path the secret it asked for.
func explain(err error, self spiffeid.ID, path, nexusURL string) string {
	var ce *client.Error
	if !errors.As(err, &ce) {
		return err.Error()
	}
	if !ce.Remote {
		if ce.Code == connect.CodeDeadlineExceeded {
			return fmt.Sprintf("no answer from Nexus at %s within %s: %v", nexusURL, callTimeout, err)
		}
		if ce.Code == connect.CodeUnauthenticated {
			return fmt.Sprintf("Nexus at %s is not the server this workload expects: %v\n"+
				"Check SPIKE_NEXUS_URL, SPIKE_NEXUS_ID and the trust bundle.", nexusURL, err)
		}
		return fmt.Sprintf("cannot reach Nexus at %s: %v\n"+
			"Check that SPIKE is running and that SPIKE_NEXUS_URL and SPIKE_NEXUS_ID point at it. "+
			"A TLS error means Nexus and this workload do not trust each other's SVIDs.", nexusURL, err)
	}
	msg := fmt.Sprintf("Nexus refused (%s): %s", ce.Code, ce.Message)
	if hint := refusalHint(ce.Code, self, path); hint != "" {
		msg += "\n" + hint
	}
	return msg
}

// refusalHint says what a refusal with code means for a workload.
func refusalHint(code connect.Code, self spiffeid.ID, path string) string {
	switch code {
	case connect.CodePermissionDenied:
		return fmt.Sprintf("No policy grants %s read on %s. An admin can check with\n"+
			"    spike policy check '%s' '%s'\n"+
			"and grant it with, e.g.:\n"+
			"    spike policy put NAME --spiffe-id '%s' --path '%s' --perm read", self, path, self, path, self, path)
	case connect.CodeNotFound:
		return fmt.Sprintf("There is no secret at %s, or its latest version was deleted or destroyed.", path)
	case connect.CodeFailedPrecondition:
		return "SPIKE is sealed or not initialised: no secret can be read until an admin " +
			"unseals it (spike operator unseal). Retry later."
	case connect.CodeUnavailable:
		return "Nexus is up but its database or Keeper is not, and still was after retries. Retry later."
	case connect.CodeUnauthenticated:
		return "Nexus did not accept this caller's credentials. A workload needs only its own SVID, " +
			"from Nexus's trust domain and not expired; admin SPIFFE IDs also need an admin token, " +
			"so run workloads with their own identity."
	case connect.CodeDataLoss:
		return "The stored secret failed authentication: it was changed or corrupted in the database, " +
			"so Nexus did not return it. Nothing to fix in the workload; tell an operator."
	case connect.CodeInvalidArgument:
		return "The request was malformed; the message names the field (a path is segments of A-Z a-z 0-9 . _ - joined by /)."
	default:
		return ""
	}
}
