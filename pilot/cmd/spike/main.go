// Command spike is Pilot, the admin command line of SPIKE. It talks to Nexus
// over SPIFFE mutual TLS; see `spike --help` for the commands and the
// environment variables it reads.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spike-dev/spike/pilot/internal/cli"
)

// version is the Pilot version, set at build time with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Environ, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one spike invocation and returns its exit code.
func run(ctx context.Context, args []string, getenv func(string) string, environ func() []string,
	stdin io.Reader, stdout, stderr io.Writer) int {
	p := &cli.Program{
		Version: version,
		Getenv:  getenv,
		Environ: environ,
		Stdin:   stdin,
		Stdout:  stdout,
		Stderr:  stderr,
	}
	return p.Run(ctx, args)
}
