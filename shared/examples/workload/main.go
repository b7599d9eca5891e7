// Command spike-example-workload shows how a workload reads its secrets from
// SPIKE. It proves who it is with its own X.509 SVID over mutual TLS, calls
// Nexus with the generated Connect client and prints the secret. The README
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
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
)

// Exit codes.
const (
	exitOK      = 0
	exitLocal   = 1 // usage error or local failure, including an unreachable Nexus
	exitRefused = 2 // Nexus answered with an error
)

const (
	usage = "usage: spike-example-workload PATH [KEY]"
	// defaultNexusURL is where the local stack's Nexus listens.
	defaultNexusURL = "https://127.0.0.1:8553"
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

	cfg, err := loadConfig(getenv)
	if err != nil {
		return fail(exitLocal, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()

	// The workload's identity: from the SPIRE agent, or from PEM files. A
	// long-running workload keeps the source (and the client below) for its
	// whole life: a Workload API source follows SVID rotations.
	src, err := svid.NewSource(ctx, cfg.SVID)
	if err != nil {
		return fail(exitLocal, "load the workload's SVID: %v", err)
	}
	defer src.Close()
	self, err := src.ID()
	if err != nil {
		return fail(exitLocal, "read the workload's SVID: %v", err)
	}

	secret, err := getSecret(ctx, src, cfg, path)
	if err != nil {
		return fail(exitCode(err), "%s", explain(err, self, path, cfg.NexusURL))
	}

	if key == "" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		err = enc.Encode(secret.GetData())
	} else {
		value, ok := secret.GetData()[key]
		if !ok {
			return fail(exitLocal, "%s (version %d) has no key %q", path, secret.GetVersion(), key)
		}
		_, err = io.WriteString(stdout, value)
	}
	if err != nil {
		return fail(exitLocal, "write %s: %v", path, err)
	}
	return exitOK
}

// getSecret reads the latest version of the secret at path from Nexus,
// presenting src's SVID.
func getSecret(ctx context.Context, src *svid.Source, cfg config, path string) (*nexusv1.Secret, error) {
	// Mutual TLS: present our SVID, accept only a server with Nexus's SPIFFE
	// ID. The client retries when Nexus cannot be reached or answers
	// Unavailable, never after a TLS or authorization failure. Its
	// interceptor reports a call that may have reached Nexus without an
	// answer as Unknown (it may or may not have been applied), or as
	// Unavailable for a read like this one.
	httpClient := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(cfg.NexusID)))
	secrets := nexusv1connect.NewSecretServiceClient(httpClient, cfg.NexusURL,
		connect.WithInterceptors(rpcclient.Interceptor()))

	resp, err := secrets.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: path}))
	if err != nil {
		return nil, err
	}
	return resp.Msg.GetSecret(), nil
}

// config says which Nexus to call and where the workload's SVID comes from.
type config struct {
	NexusURL string
	NexusID  spiffeid.ID
	SVID     svid.Config
}

// loadConfig reads SPIKE_NEXUS_URL, SPIKE_TRUST_DOMAIN, SPIKE_NEXUS_ID and
// the SVID variables through getenv.
func loadConfig(getenv func(string) string) (config, error) {
	td, err := identity.TrustDomain(getenv("SPIKE_TRUST_DOMAIN"))
	if err != nil {
		return config{}, fmt.Errorf("SPIKE_TRUST_DOMAIN: %w", err)
	}
	cfg := config{
		NexusURL: getenv("SPIKE_NEXUS_URL"),
		NexusID:  identity.Nexus(td),
		SVID:     svid.ConfigFromEnv(getenv),
	}
	if cfg.NexusURL == "" {
		cfg.NexusURL = defaultNexusURL
	}
	if !strings.HasPrefix(cfg.NexusURL, "https://") {
		return config{}, fmt.Errorf("SPIKE_NEXUS_URL: %q is not an https URL", cfg.NexusURL)
	}
	if s := getenv("SPIKE_NEXUS_ID"); s != "" {
		if cfg.NexusID, err = spiffeid.FromString(s); err != nil {
			return config{}, fmt.Errorf("SPIKE_NEXUS_ID: %w", err)
		}
	}
	return cfg, nil
}

// exitCode is exitRefused for an error that came over the wire from Nexus
// and exitLocal for everything else.
func exitCode(err error) int {
	if connect.IsWireError(err) {
		return exitRefused
	}
	return exitLocal
}

// explain turns a failed call into sentences that say what happened and
// what the workload's owner can do about it. self is the workload's SPIFFE
// ID and path the secret it asked for.
func explain(err error, self spiffeid.ID, path, nexusURL string) string {
	var connectErr *connect.Error
	if !errors.As(err, &connectErr) {
		return err.Error()
	}
	if !connect.IsWireError(err) {
		if connectErr.Code() == connect.CodeDeadlineExceeded {
			return fmt.Sprintf("no answer from Nexus at %s within %s: %v", nexusURL, callTimeout, err)
		}
		return fmt.Sprintf("cannot reach Nexus at %s: %v\n"+
			"Check that SPIKE is running and that SPIKE_NEXUS_URL and SPIKE_NEXUS_ID point at it. "+
			"A TLS error means Nexus and this workload do not trust each other's SVIDs.", nexusURL, err)
	}
	msg := fmt.Sprintf("Nexus refused (%s): %s", connectErr.Code(), connectErr.Message())
	if hint := refusalHint(connectErr.Code(), self, path); hint != "" {
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
