// Package keepertest runs a real Keeper in-process for the tests of other
// modules: the same app that spike-keeper runs, serving over real SPIFFE
// mutual TLS with an SVID minted by a test CA, so that tests need no
// Keeper binary.
package keepertest

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/keeper/internal/app"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
)

// Cheap Argon2id costs, so that Init and Unseal take milliseconds.
const (
	defaultKDFTime      = 1
	defaultKDFMemoryKiB = 1024
	defaultKDFThreads   = 1
)

// Options configure a Keeper. The zero value is Keeper "1" of the CA's trust
// domain, admitting that domain's Nexus, with cheap KDF costs.
type Options struct {
	// ID is Keeper's SPIFFE ID; zero means identity.Keeper(td, "1").
	ID spiffeid.ID
	// NexusID is the only caller Keeper admits; zero means
	// identity.Nexus(td).
	NexusID spiffeid.ID
	// KDFTime, KDFMemoryKiB and KDFThreads are the Argon2id cost of
	// sealing new keyrings; each zero means the cheapest useful value
	// (1 pass, 1024 KiB, 1 thread).
	KDFTime      uint32
	KDFMemoryKiB uint32
	KDFThreads   uint8
	// Log receives Keeper's logs; nil discards them.
	Log *slog.Logger
}

// Keeper is a Keeper serving on a loopback address until the test ends.
type Keeper struct {
	t   testing.TB
	id  spiffeid.ID
	cfg app.Config
	log *slog.Logger
	url string

	mu   sync.Mutex
	stop context.CancelFunc // nil while stopped
	done <-chan error
}

// Start runs a sealed Keeper on a free loopback port, serving over SPIFFE
// mTLS with an SVID for opts.ID minted by ca and admitting only
// opts.NexusID. It stops when the test ends.
func Start(t testing.TB, ca *devca.CA, opts Options) *Keeper {
	t.Helper()
	td := ca.TrustDomain()
	if opts.ID.IsZero() {
		opts.ID = identity.Keeper(td, "1")
	}
	if opts.NexusID.IsZero() {
		opts.NexusID = identity.Nexus(td)
	}
	svid, err := ca.WriteSVID(t.TempDir(), opts.ID, 24*time.Hour)
	if err != nil {
		t.Fatalf("keepertest: write SVID: %v", err)
	}
	env := map[string]string{
		"SPIKE_TRUST_DOMAIN":          td.Name(),
		"SPIKE_KEEPER_LISTEN":         "127.0.0.1:0",
		"SPIKE_KEEPER_OPS_LISTEN":     "off",
		"SPIKE_KEEPER_NEXUS_ID":       opts.NexusID.String(),
		"SPIKE_KEEPER_KDF_TIME":       strconv.FormatUint(uint64(orDefault(opts.KDFTime, defaultKDFTime)), 10),
		"SPIKE_KEEPER_KDF_MEMORY_KIB": strconv.FormatUint(uint64(orDefault(opts.KDFMemoryKiB, defaultKDFMemoryKiB)), 10),
		"SPIKE_KEEPER_KDF_THREADS":    strconv.FormatUint(uint64(orDefault(opts.KDFThreads, defaultKDFThreads)), 10),
		"SPIKE_SVID_CERT":             svid.CertFile,
		"SPIKE_SVID_KEY":              svid.KeyFile,
		"SPIKE_TRUST_BUNDLE":          svid.BundleFile,
	}
	cfg, err := app.LoadConfig(func(name string) string { return env[name] })
	if err != nil {
		t.Fatalf("keepertest: %v", err)
	}
	k := &Keeper{t: t, id: opts.ID, cfg: cfg, log: opts.Log}
	k.mu.Lock()
	defer k.mu.Unlock()
	a := k.startLocked()
	// Restarts listen on the same address, so the URL stays valid.
	k.cfg.Listen = a.Addr().(*net.TCPAddr)
	k.url = "https://" + a.Addr().String()
	t.Cleanup(k.Stop)
	return k
}

// URL returns Keeper's base URL, https://127.0.0.1:port.
func (k *Keeper) URL() string { return k.url }

// ID returns Keeper's SPIFFE ID.
func (k *Keeper) ID() spiffeid.ID { return k.id }

// Stop stops Keeper as SIGTERM stops spike-keeper: in-flight requests
// finish, the keyring is dropped and connections are refused until Restart.
// With a client connected it takes about a second, HTTP/2's grace period
// for closing a connection. Stopping a stopped Keeper does nothing.
func (k *Keeper) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopLocked()
}

// Restart stops Keeper if it runs and starts it again on the same address.
// It comes back sealed, as a restarted process does: Keeper holds its
// keyring in memory only. Call it from the test's goroutine.
func (k *Keeper) Restart() {
	k.t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopLocked()
	k.startLocked()
}

// startLocked starts a new app on k.cfg.
func (k *Keeper) startLocked() *app.App {
	k.t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	a, err := app.New(ctx, k.cfg, k.log)
	if err != nil {
		stop()
		k.t.Fatalf("keepertest: start Keeper: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	k.stop, k.done = stop, done
	return a
}

// stopLocked stops the running app, if any, and waits for it to return.
func (k *Keeper) stopLocked() {
	if k.stop == nil {
		return
	}
	k.stop()
	if err := <-k.done; err != nil {
		k.t.Errorf("keepertest: Keeper stopped with an error: %v", err)
	}
	k.stop, k.done = nil, nil
}

func orDefault[T uint8 | uint32](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}
