package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/keeper/internal/keyring"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/ops"
	"github.com/spike-dev/spike/shared/svid"
)

// Defaults for settings not given in the environment.
const (
	defaultListen    = "127.0.0.1:8443"
	defaultOpsListen = "127.0.0.1:8444"
	defaultKDFTime   = 3
	defaultKDFMemory = 64 << 10 // KiB: 64 MiB
	defaultKDFThread = 4
	defaultReseed    = time.Second
)

// maxPeers bounds SPIKE_KEEPER_PEERS.
const maxPeers = 16

// parsePeers reads a comma-separated list of https:// URLs.
func parsePeers(v string) ([]*url.URL, error) {
	var peers []*url.URL
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		u, err := url.Parse(f)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("%q is not an https:// URL of a Keeper", f)
		}
		peers = append(peers, u)
	}
	if len(peers) > maxPeers {
		return nil, fmt.Errorf("at most %d peers, got %d", maxPeers, len(peers))
	}
	return peers, nil
}

// Config is Keeper's configuration, read from the environment.
type Config struct {
	// TrustDomain is SPIKE's trust domain (SPIKE_TRUST_DOMAIN).
	TrustDomain spiffeid.TrustDomain
	// Listen is the API address (SPIKE_KEEPER_LISTEN).
	Listen *net.TCPAddr
	// OpsListen is where /healthz, /readyz and /metrics are served over
	// plain HTTP (SPIKE_KEEPER_OPS_LISTEN); nil when it is "off".
	OpsListen *net.TCPAddr
	// NexusID is the only SPIFFE ID admitted to KeeperService
	// (SPIKE_KEEPER_NEXUS_ID).
	NexusID spiffeid.ID
	// Peers are the other Keepers' URLs (SPIKE_KEEPER_PEERS, comma
	// separated), asked for the keyring when this one holds none.
	Peers []*url.URL
	// ReseedInterval is how often a Keeper without the keyring asks its
	// peers (SPIKE_KEEPER_RESEED_INTERVAL).
	ReseedInterval time.Duration
	// KDF is the Argon2id cost for sealing new keyrings
	// (SPIKE_KEEPER_KDF_TIME, SPIKE_KEEPER_KDF_MEMORY_KIB,
	// SPIKE_KEEPER_KDF_THREADS). Its salt is unused.
	KDF keyring.Params
	// SVID says where Keeper's SVID comes from.
	SVID svid.Config
	// LogLevel is the minimum level logged (SPIKE_LOG_LEVEL).
	LogLevel slog.Level
}

// LoadConfig reads and validates the configuration through getenv. It is
// the only place that reads Keeper's environment. Every problem is
// reported, each naming its variable.
func LoadConfig(getenv func(string) string) (Config, error) {
	var errs []error
	cfg := Config{SVID: svid.ConfigFromEnv(getenv)}

	td, err := identity.TrustDomain(getenv("SPIKE_TRUST_DOMAIN"))
	if err != nil {
		errs = append(errs, fmt.Errorf("SPIKE_TRUST_DOMAIN: %w", err))
	}
	cfg.TrustDomain = td

	listen := orDefault(getenv("SPIKE_KEEPER_LISTEN"), defaultListen)
	if cfg.Listen, err = net.ResolveTCPAddr("tcp", listen); err != nil {
		errs = append(errs, fmt.Errorf("SPIKE_KEEPER_LISTEN: %w", err))
	}

	if opsListen, err := ops.ListenAddress(getenv("SPIKE_KEEPER_OPS_LISTEN"), defaultOpsListen); err != nil {
		errs = append(errs, fmt.Errorf("SPIKE_KEEPER_OPS_LISTEN: %w", err))
	} else if opsListen != "" {
		if cfg.OpsListen, err = net.ResolveTCPAddr("tcp", opsListen); err != nil {
			errs = append(errs, fmt.Errorf("SPIKE_KEEPER_OPS_LISTEN: %w", err))
		}
	}

	if v := getenv("SPIKE_KEEPER_NEXUS_ID"); v != "" {
		if cfg.NexusID, err = spiffeid.FromString(v); err != nil {
			errs = append(errs, fmt.Errorf("SPIKE_KEEPER_NEXUS_ID: %w", err))
		}
	} else if !td.IsZero() {
		cfg.NexusID = identity.Nexus(td)
	}

	cfg.Peers, err = parsePeers(getenv("SPIKE_KEEPER_PEERS"))
	if err != nil {
		errs = append(errs, fmt.Errorf("SPIKE_KEEPER_PEERS: %w", err))
	}
	cfg.ReseedInterval, err = time.ParseDuration(orDefault(getenv("SPIKE_KEEPER_RESEED_INTERVAL"), defaultReseed.String()))
	if err != nil || cfg.ReseedInterval < 100*time.Millisecond || cfg.ReseedInterval > time.Minute {
		errs = append(errs, errors.New("SPIKE_KEEPER_RESEED_INTERVAL: must be a duration from 100ms to 1m"))
	}

	t, errT := parseUint(getenv, "SPIKE_KEEPER_KDF_TIME", defaultKDFTime, 32)
	m, errM := parseUint(getenv, "SPIKE_KEEPER_KDF_MEMORY_KIB", defaultKDFMemory, 32)
	th, errTh := parseUint(getenv, "SPIKE_KEEPER_KDF_THREADS", defaultKDFThread, 8)
	errs = append(errs, errT, errM, errTh)
	if errT == nil && errM == nil && errTh == nil {
		p := keyring.Params{Time: uint32(t), MemoryKiB: uint32(m), Threads: uint8(th), Salt: make([]byte, keyring.SaltSize)}
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("SPIKE_KEEPER_KDF_*: %w", err))
		}
		p.Salt = nil
		cfg.KDF = p
	}

	if err := cfg.LogLevel.UnmarshalText([]byte(orDefault(getenv("SPIKE_LOG_LEVEL"), "info"))); err != nil {
		errs = append(errs, fmt.Errorf("SPIKE_LOG_LEVEL: %w", err))
	}

	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// parseUint reads an unsigned integer of the given bit size, or def when
// the variable is unset.
func parseUint(getenv func(string) string, name string, def uint64, bits int) (uint64, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not an integer in 0..%d", name, v, uint64(1)<<bits-1)
	}
	return n, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
