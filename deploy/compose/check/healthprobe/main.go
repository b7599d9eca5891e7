// Command healthprobe is the container health check of the Keeper and Nexus
// images: it fetches a URL of the program's plain-HTTP ops listener and exits
// 0 when the answer is 200 OK, 1 otherwise. The images are distroless, with
// no shell or curl, so the health check needs a binary of its own.
//
//	healthprobe http://127.0.0.1:8444/healthz
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Exit codes, as Docker reads them: 0 healthy, 1 unhealthy.
const (
	exitHealthy   = 0
	exitUnhealthy = 1
)

// maxBody bounds how much of a failed answer is echoed into the health log.
const maxBody = 512

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run probes the URL in args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("healthprobe", flag.ContinueOnError)
	fl.SetOutput(stderr)
	timeout := fl.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fl.Parse(args); err != nil {
		return exitUnhealthy
	}
	if fl.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: healthprobe [-timeout 3s] http://HOST:PORT/PATH")
		return exitUnhealthy
	}
	if err := probe(ctx, fl.Arg(0), *timeout); err != nil {
		fmt.Fprintf(stderr, "healthprobe: %v\n", err)
		return exitUnhealthy
	}
	fmt.Fprintln(stdout, "healthy")
	return exitHealthy
}

// probe GETs rawURL, which must be a plain http URL, and returns nil on 200.
func probe(ctx context.Context, rawURL string, timeout time.Duration) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	if u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q: want an http://HOST:PORT/PATH URL (the ops listener is plain HTTP)", rawURL)
	}
	if timeout <= 0 {
		return errors.New("-timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		return fmt.Errorf("%s: %s %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
