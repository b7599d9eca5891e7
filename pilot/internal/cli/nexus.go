package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"connectrpc.com/connect"
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
	policies nexusv1connect.PolicyServiceClient
	audit    nexusv1connect.AuditServiceClient
	// streams serves the streaming operator calls (backup, verify,
	// restore): over a transport that neither buffers nor retries a
	// request (see streamClient).
	streams nexusv1connect.OperatorServiceClient
	release func() error
}

// notReplayable are the procedures Nexus keeps no outcome for under an
// idempotency key (it ignores the key): a second attempt after the first
// may have been applied would be answered as if it had not (init: "already
// initialised"; rekey: the old credentials refused, and the new shares,
// shown once, lost). They are sent once; an unanswered one is Unknown.
var notReplayable = []string{
	nexusv1connect.OperatorServiceInitProcedure,
	nexusv1connect.OperatorServiceRekeyProcedure,
	nexusv1connect.OperatorServiceLoginProcedure,
	nexusv1connect.OperatorServiceUnsealProcedure,
	// Each step of a rotation checks the version it expects, so a
	// repeat is refused rather than applied twice; spike operator rotate
	// resumes from the state it finds.
	nexusv1connect.OperatorServiceRotateRootKeyProcedure,
	nexusv1connect.OperatorServiceDestroyOldRootKeysProcedure,
}

// newNexus builds the clients of the Nexus at url on httpClient, each
// with rpcclient's interceptor (a call that may have reached Nexus without
// an answer is Unknown, or Unavailable for a read) and opts; closeFn
// releases what the transport holds.
func newNexus(httpClient connect.HTTPClient, url string, closeFn func() error, opts ...connect.ClientOption) *nexus {
	streamOpts := opts
	opts = append([]connect.ClientOption{connect.WithInterceptors(rpcclient.Interceptor(notReplayable...))}, opts...)
	return &nexus{
		url:      url,
		operator: nexusv1connect.NewOperatorServiceClient(httpClient, url, opts...),
		streams:  nexusv1connect.NewOperatorServiceClient(httpClient, url, streamOpts...),
		secrets:  nexusv1connect.NewSecretServiceClient(httpClient, url, opts...),
		policies: nexusv1connect.NewPolicyServiceClient(httpClient, url, opts...),
		audit:    nexusv1connect.NewAuditServiceClient(httpClient, url, opts...),
		release:  closeFn,
	}
}

// Close releases what the transport holds (Pilot's SVID source). Its
// error cannot change the outcome of a command that has finished, so
// callers defer it unchecked.
func (n *nexus) Close() error {
	return n.release()
}

// dialNexus loads Pilot's SVID and builds clients that speak Connect over
// mutual TLS to the Nexus that cfg names. Nothing goes over the network
// until the first call.
func dialNexus(ctx context.Context, cfg Config, opts ...connect.ClientOption) (*nexus, error) {
	sctx, cancel := context.WithTimeout(ctx, svidWait)
	src, err := svid.NewSource(sctx, cfg.SVID)
	cancel()
	if err != nil {
		return nil, svidError("Pilot", cfg.SVID, sctx.Err() != nil && ctx.Err() == nil, err)
	}
	tlsConf := mtls.ClientConfig(src, tlsconfig.AuthorizeID(cfg.NexusID))
	n := newNexus(rpcclient.New(tlsConf), cfg.NexusURL, src.Close, opts...)
	n.streams = nexusv1connect.NewOperatorServiceClient(streamClient(tlsConf), cfg.NexusURL, opts...)
	return n, nil
}

// svidError explains why who's SVID could not be loaded from cfg (err);
// waited says that the wait for it (svidWait) ran out.
func svidError(who string, cfg svid.Config, waited bool, err error) error {
	exe, _ := os.Executable()
	return svidErrorFor(who, cfg, waited, exe, os.Getuid(), err)
}

// svidErrorFor is svidError for the binary at exe run by uid. A SPIRE
// agent answers at once; one that keeps the caller waiting has no
// registration entry for it: the error names the binary's path and the uid
// that an entry must match, and not the environment (". ./.spike/env"),
// which is set since it names the agent. Any other failure (no SVID
// configured, unreadable files, no agent at the socket) is most likely an
// environment that is not set: the error ends with svidHint.
func svidErrorFor(who string, cfg svid.Config, waited bool, exe string, uid int, err error) error {
	if waited && cfg.EndpointSocket != "" {
		return fmt.Errorf("the SPIRE agent at %s gave %s no SVID within %s: is this program registered? "+
			"Its entry must match this binary's path (unix:path:%s) and your uid (unix:uid:%d)",
			cfg.EndpointSocket, who, svidWait, exe, uid)
	}
	return fmt.Errorf("load %s's SVID: %w\n%s", who, err, svidHint)
}

// svidWait bounds the wait for Pilot's SVID: from files it is immediate,
// and a SPIRE agent that has one for Pilot gives it within a second.
const svidWait = 5 * time.Second

// config returns the configuration from the environment, read once per
// invocation.
func (inv *invocation) config() (Config, error) {
	if inv.cfg == nil {
		cfg, err := LoadConfig(inv.p.Getenv)
		if err != nil {
			return Config{}, err
		}
		inv.cfg = &cfg
	}
	return *inv.cfg, nil
}

// connect returns the Nexus clients, which send the saved admin token (if
// any) with every call; the caller must call Close. Only commands that
// talk to Nexus call it, so help and version work without an SVID.
func (inv *invocation) connect(ctx context.Context) (*nexus, error) {
	cfg, err := inv.config()
	if err != nil {
		return nil, err
	}
	token, err := readToken(cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	return inv.dial(ctx, cfg, token)
}

// connectWithoutToken returns Nexus clients that send no admin token, for
// the calls that the admin password authenticates (init and login): a
// stale or unreadable token file must not stand in the way of replacing it.
func (inv *invocation) connectWithoutToken(ctx context.Context) (*nexus, error) {
	cfg, err := inv.config()
	if err != nil {
		return nil, err
	}
	return inv.dial(ctx, cfg, "")
}

// dial builds the clients, adding the token interceptor when there is a
// token.
func (inv *invocation) dial(ctx context.Context, cfg Config, token string) (*nexus, error) {
	ctx, cancel := context.WithTimeout(ctx, inv.timeout)
	defer cancel()
	var opts []connect.ClientOption
	if token != "" {
		opts = append(opts, connect.WithInterceptors(bearerToken(token)))
	}
	if inv.p.dial != nil {
		return inv.p.dial(ctx, opts...)
	}
	return dialNexus(ctx, cfg, opts...)
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
	defer n.Close()
	return inv.call(ctx, n, func(ctx context.Context) error { return fn(ctx, n) })
}
