package cli

import (
	"context"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
)

// nexus holds the Connect clients of one Nexus.
type nexus struct {
	url      string
	operator nexusv1connect.OperatorServiceClient
	secrets  nexusv1connect.SecretServiceClient
	close    func() error
}

// dialNexus loads Pilot's SVID and builds clients that speak Connect over
// mutual TLS to the Nexus that cfg names. Nothing goes over the network
// until the first call.
func dialNexus(ctx context.Context, cfg Config) (*nexus, error) {
	src, err := svid.NewSource(ctx, cfg.SVID)
	if err != nil {
		return nil, fmt.Errorf("load Pilot's SVID: %w\n%s", err, svidHint)
	}
	httpClient := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(cfg.NexusID)))
	return &nexus{
		url:      cfg.NexusURL,
		operator: nexusv1connect.NewOperatorServiceClient(httpClient, cfg.NexusURL),
		secrets:  nexusv1connect.NewSecretServiceClient(httpClient, cfg.NexusURL),
		close:    src.Close,
	}, nil
}

// connect returns the Nexus clients; the caller must call close. Only
// commands that talk to Nexus call it, so help and version work without an
// SVID.
func (inv *invocation) connect(ctx context.Context) (*nexus, error) {
	ctx, cancel := context.WithTimeout(ctx, inv.timeout)
	defer cancel()
	if inv.p.dial != nil {
		return inv.p.dial(ctx)
	}
	cfg, err := LoadConfig(inv.p.Getenv)
	if err != nil {
		return nil, err
	}
	return dialNexus(ctx, cfg)
}

// call runs one exchange with Nexus under the --timeout deadline and turns
// a failure to get an answer into an error that says how to fix it.
func (inv *invocation) call(ctx context.Context, n *nexus, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, inv.timeout)
	defer cancel()
	return transportError(fn(ctx), n.url, inv.timeout)
}

// withNexus connects to Nexus, runs fn under the call deadline and closes
// the connection.
func (inv *invocation) withNexus(ctx context.Context, fn func(context.Context, *nexus) error) error {
	n, err := inv.connect(ctx)
	if err != nil {
		return err
	}
	defer n.close()
	return inv.call(ctx, n, func(ctx context.Context) error { return fn(ctx, n) })
}
