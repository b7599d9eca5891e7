package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
)

// Exit codes of spike.
const (
	exitOK      = 0
	exitLocal   = 1 // usage error or local failure, including an unreachable Nexus
	exitRefused = 2 // Nexus answered with an error
	exitUnknown = 3 // the request may or may not have been applied
)

// errTrailFailed says that Nexus checked the audit trail and found it
// tampered with. Like a refusal, it exits with exitRefused: the answer
// came from Nexus and it is "no".
var errTrailFailed = errors.New("audit trail failed verification")

// errSealUnconfirmed says that Nexus sealed, but not every Keeper confirmed
// it: the answer came from Nexus, and it is "not quite", so it exits with
// exitRefused.
var errSealUnconfirmed = errors.New("not every Keeper confirmed the seal")

// exitCode maps the error of a command to the process exit code. An
// Unknown outcome, whether Nexus said so (an uncertain commit) or the
// connection broke after the request was sent, has a code of its own: a
// script must not take it for "nothing happened". Otherwise only an error
// that came over the wire from Nexus is a refusal; everything the client
// produced itself (bad arguments, unreadable input, missing SVID, failed
// connection) is a local error.
func exitCode(err error) int {
	var connectErr *connect.Error
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &connectErr) && connectErr.Code() == connect.CodeUnknown:
		return exitUnknown
	case connect.IsWireError(err), errors.Is(err, errTrailFailed), errors.Is(err, errSealUnconfirmed):
		return exitRefused
	default:
		return exitLocal
	}
}

// errorMessage is the text printed after "spike: " for err. For a refusal
// it is Nexus's own message, which already says what to do.
func errorMessage(err error) string {
	var connectErr *connect.Error
	if errors.As(err, &connectErr) && connect.IsWireError(err) {
		if msg := connectErr.Message(); msg != "" {
			return msg
		}
		return connectErr.Code().String()
	}
	return err.Error()
}

// usageError is a mistake on the command line. Its message points at the
// command's help.
type usageError struct {
	command string
	err     error
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%v\nRun '%s --help' for usage.", e.err, e.command)
}

func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{command: cmd.CommandPath(), err: fmt.Errorf(format, args...)}
}

// noArgs accepts a command line without positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf(cmd, "%s takes no arguments, got %q", cmd.CommandPath(), args[0])
	}
	return nil
}

// noSubcommand is the argument check of a command that only groups
// subcommands: any argument is an unknown subcommand.
func noSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if suggestions := cmd.SuggestionsFor(args[0]); len(suggestions) > 0 {
		msg += "; did you mean " + strings.Join(suggestions, " or ") + "?"
	}
	return &usageError{command: cmd.CommandPath(), err: errors.New(msg)}
}

// argCount accepts between minArgs and maxArgs positional arguments
// (maxArgs < 0: no limit); want describes them for the error message.
func argCount(minArgs, maxArgs int, want string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < minArgs:
			return usageErrorf(cmd, "missing arguments: expected %s", want)
		case maxArgs >= 0 && len(args) > maxArgs:
			return usageErrorf(cmd, "too many arguments: expected %s, got %d", want, len(args))
		}
		return nil
	}
}

// connectionHint tells the user how to point spike at a running Nexus.
const connectionHint = "Check that SPIKE is running and that SPIKE_NEXUS_URL (and SPIKE_NEXUS_ID) " +
	"point at Nexus; for the local stack run: . ./.spike/env"

// svidHint tells the user how to give spike an identity; the error before it
// names the variables involved.
const svidHint = "For the local stack, set the environment with: . ./.spike/env"

// unknownHint says what to do when a request may or may not have been
// applied.
const unknownHint = "Look at the current state (e.g. spike secret get) before running the command again: " +
	"a new command is a new request, and could apply the change twice."

// transportError explains an RPC failure that did not come from Nexus:
// the request never got an answer. Wire errors and non-Connect errors are
// returned unchanged.
func transportError(err error, url string, timeout time.Duration) error {
	var connectErr *connect.Error
	if err == nil || connect.IsWireError(err) || !errors.As(err, &connectErr) {
		return err
	}
	switch connectErr.Code() {
	case connect.CodeCanceled:
		return fmt.Errorf("interrupted: %w", err)
	case connect.CodeDeadlineExceeded:
		return fmt.Errorf("no answer from Nexus at %s within %s: %w\n%s", url, timeout, err, connectionHint)
	case connect.CodeUnknown:
		return fmt.Errorf("no answer from Nexus at %s: %w\n%s", url, err, unknownHint)
	default:
		return fmt.Errorf("cannot reach Nexus at %s: %w\n%s", url, err, connectionHint)
	}
}

// errorDoc is an error as -o json prints it on stderr.
type errorDoc struct {
	// Code is Nexus's code for a refusal ("not_found", "unknown"...),
	// "audit_trail_failed" or "seal_unconfirmed" for those verdicts, or
	// "usage" or "local" for a mistake or failure on this side.
	Code    string `json:"code"`
	Message string `json:"message"`
	// Exit is the process's exit code.
	Exit int `json:"exit"`
}

// writeJSONError prints err as one JSON object on w.
func writeJSONError(w io.Writer, err error, exit int) {
	e := errorDoc{Code: "local", Message: errorMessage(err), Exit: exit}
	var connectErr *connect.Error
	var usage *usageError
	switch {
	case errors.As(err, &connectErr) && (connect.IsWireError(err) || connectErr.Code() == connect.CodeUnknown):
		e.Code = connectErr.Code().String()
	case errors.As(err, &usage):
		e.Code = "usage"
	case errors.Is(err, errTrailFailed):
		e.Code = "audit_trail_failed"
	case errors.Is(err, errSealUnconfirmed):
		e.Code = "seal_unconfirmed"
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if enc.Encode(e) != nil {
		fmt.Fprintf(w, "spike: %s\n", e.Message)
	}
}
