// Package client is the Go client of SPIKE for workloads and tools: it
// reads, writes, lists and watches secrets in Nexus as the caller's own
// SPIFFE ID, proved by its X.509 SVID over mutual TLS. No password, API
// key or token: Nexus grants what a policy gives that SPIFFE ID.
//
//	cfg, err := client.ConfigFromEnv(os.Getenv) // or a client.Config of your own
//	if err != nil {
//		return err
//	}
//	c, err := client.New(ctx, cfg)
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	s, err := c.Get(ctx, "apps/web/db")
//	switch {
//	case errors.Is(err, client.ErrPermissionDenied): // no policy grants read
//	case errors.Is(err, client.ErrNotFound):
//	case err != nil:
//		return err
//	}
//	password := s.Data["pass"]
//
// # Identity
//
// The SVID comes from the SPIFFE Workload API (a SPIRE agent) when
// Config.SVID.EndpointSocket is set (SPIFFE_ENDPOINT_SOCKET), and from PEM
// files otherwise (SPIKE_SVID_CERT, SPIKE_SVID_KEY, SPIKE_TRUST_BUNDLE).
// Either way rotations reach a running client: the Workload API pushes
// them, and the files are read again when they change on disk (looked at
// at most once a second, when a TLS handshake needs the SVID; a file
// caught half written keeps the last good SVID). The client accepts only
// a server whose SVID names Config.NexusID.
//
// # Retries and outcomes
//
// Single calls go through shared/rpcclient: each logical call carries an
// Idempotency-Key header, the same on every retry, and Nexus answers a
// repeated key with the first outcome, so a write is applied at most once.
// The client retries refused connections, Unavailable answers, and
// connections that broke after the request was sent; never a TLS or
// authorization failure nor any other answer. When no answer came back
// at all, a write fails with ErrOutcomeUnknown (it may or may not have
// been applied: look before writing again) and a read with ErrUnavailable.
//
// # Errors
//
// Every failed call returns an *Error with the Connect code and Nexus's
// message (which never holds secret material); errors.Is matches it
// against one of the sentinels ErrNotFound, ErrPermissionDenied,
// ErrUnauthenticated, ErrSealed, ErrConflict, ErrUnavailable,
// ErrOutcomeUnknown, ErrDataLoss, ErrCursorExpired... The caller's own
// cancellation or deadline matches context.Canceled or
// context.DeadlineExceeded instead.
//
// # Watching
//
// Watch streams committed changes under a prefix and reconnects by itself
// from the last cursor, so that a watcher sees every change once; see
// Watch.
//
// # Using it from another module
//
// SPIKE's modules are not published with versions: a module outside the
// SPIKE checkout requires shared and proto at the zero version and points
// both at a checkout with one replace each:
//
//	require (
//		github.com/spike-dev/spike/proto v0.0.0-00010101000000-000000000000
//		github.com/spike-dev/spike/shared v0.0.0-00010101000000-000000000000
//	)
//
//	replace (
//		github.com/spike-dev/spike/proto => /path/to/spike/proto
//		github.com/spike-dev/spike/shared => /path/to/spike/shared
//	)
package client
