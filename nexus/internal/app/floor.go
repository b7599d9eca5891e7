package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/nexus/internal/server"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/ops"
	"github.com/spike-dev/spike/shared/svid"
)

// FloorConfig configures `spike-nexus floor`, the protocol floor of
// `make bench` (server.FloorHandler).
type FloorConfig struct {
	TrustDomain spiffeid.TrustDomain
	// Listen is the API address; OpsListen serves /metrics (the process's
	// CPU, which the bench reads), "" for none.
	Listen, OpsListen string
	// ValueSize is the size of the value every GetSecret returns.
	ValueSize int
	SVID      svid.Config
}

// maxFloorValue bounds SPIKE_FLOOR_VALUE_SIZE as Nexus bounds a value.
const maxFloorValue = 512 << 10

// LoadFloorConfig reads FloorConfig from the environment: Nexus's
// SPIKE_TRUST_DOMAIN and SVID variables, and SPIKE_FLOOR_LISTEN,
// SPIKE_FLOOR_OPS_LISTEN and SPIKE_FLOOR_VALUE_SIZE.
func LoadFloorConfig(getenv func(string) string) (FloorConfig, error) {
	var errs []error
	td, err := identity.TrustDomain(getenv("SPIKE_TRUST_DOMAIN"))
	if err != nil {
		errs = append(errs, fmt.Errorf("SPIKE_TRUST_DOMAIN: %w", err))
	}
	c := FloorConfig{TrustDomain: td, Listen: getenv("SPIKE_FLOOR_LISTEN"), SVID: svid.ConfigFromEnv(getenv)}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8563"
	}
	if c.OpsListen, err = ops.ListenAddress(getenv("SPIKE_FLOOR_OPS_LISTEN"), "127.0.0.1:8564"); err != nil {
		errs = append(errs, fmt.Errorf("SPIKE_FLOOR_OPS_LISTEN: %w", err))
	}
	size := getenv("SPIKE_FLOOR_VALUE_SIZE")
	if size == "" {
		size = "256"
	}
	if c.ValueSize, err = strconv.Atoi(size); err != nil || c.ValueSize < 1 || c.ValueSize > maxFloorValue {
		errs = append(errs, fmt.Errorf("SPIKE_FLOOR_VALUE_SIZE: must be a number of bytes from 1 to %d", maxFloorValue))
	}
	return c, errors.Join(errs...)
}

// Floor serves server.FloorHandler with Nexus's TLS and HTTP settings until
// ctx is done.
func Floor(ctx context.Context, cfg FloorConfig, log *slog.Logger) error {
	src, err := svid.NewSource(ctx, cfg.SVID)
	if err != nil {
		return fmt.Errorf("load the SVID: %w", err)
	}
	defer src.Close()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	var opsLn net.Listener
	if cfg.OpsListen != "" {
		if opsLn, err = lc.Listen(ctx, "tcp", cfg.OpsListen); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.OpsListen, err)
		}
		defer opsLn.Close()
	}
	srv := mtls.NewServer(server.FloorHandler(cfg.ValueSize),
		mtls.ServerConfig(src, tlsconfig.AuthorizeMemberOf(cfg.TrustDomain)), log)
	log.Info("protocol floor listening", "address", ln.Addr().String(), "value_size", cfg.ValueSize)
	return ops.ServeWith(ctx, opsLn, ops.Config{Registry: ops.NewRegistry(), Log: log}, func(ctx context.Context) error {
		return mtls.Serve(ctx, srv, ln)
	})
}
