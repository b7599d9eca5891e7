package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/ops"
	"github.com/spike-dev/spike/shared/svid"

	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/secret"
	"github.com/spike-dev/spike/nexus/internal/server"
)

// Config is Nexus's configuration, read from the environment once
// (LoadConfig).
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Listen      string
	OpsListen   string // "" when turned off
	Pprof       bool
	DatabaseURL string
	// DatabasePooler is what stands between Nexus and PostgreSQL
	// (SPIKE_DATABASE_POOLER).
	DatabasePooler postgres.Pooler
	// DevAllowPrivilegedRole turns the refusal to serve as a database role
	// that can alter the audit trail into a warning. Unsafe: development
	// only.
	DevAllowPrivilegedRole bool
	MaxConns               int32
	MaxVersions            int32
	// KeeperURLs are the Keepers, one or more (SPIKE_KEEPER_URLS, or
	// SPIKE_KEEPER_URL for one).
	KeeperURLs []*url.URL
	// KeeperID, when set (SPIKE_KEEPER_ID), is the only ID a Keeper may
	// present; otherwise any spike/keeper/<name> ID of the trust domain.
	KeeperID      spiffeid.ID
	Admins        []spiffeid.ID
	CheckInterval time.Duration
	// DataKeyCacheTTL is how long an unwrapped data key stays in memory
	// for reads (SPIKE_DATA_KEY_CACHE_TTL).
	DataKeyCacheTTL time.Duration
	TokenTTL        time.Duration
	MaxTokenTTL     time.Duration
	AuditLog        string
	LogLevel        slog.Level
	SVID            svid.Config
	// Source, when set, is used instead of opening one from SVID (tests
	// mint their SVIDs in-process). It is not read from the environment.
	Source *svid.Source
	// Version is Nexus's build version, reported by Status.
	Version string
	// Watch bounds WatchSecrets (SPIKE_WATCH_*); ChangeRetention is how
	// long the change log keeps a change (SPIKE_WATCH_RETENTION).
	Watch           server.WatchConfig
	ChangeRetention time.Duration
}

// LoadConfig reads the configuration from the environment through getenv.
// Every problem is reported, not only the first.
func LoadConfig(getenv func(string) string) (Config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var errs []error
	td, err := identity.TrustDomain(getenv("SPIKE_TRUST_DOMAIN"))
	if err != nil {
		return Config{}, fmt.Errorf("SPIKE_TRUST_DOMAIN: %w", err)
	}
	c := Config{
		TrustDomain: td,
		Listen:      env("SPIKE_NEXUS_LISTEN", "127.0.0.1:8553"),
		DatabaseURL: getenv("SPIKE_DATABASE_URL"),
		SVID:        svid.ConfigFromEnv(getenv),
	}
	if c.OpsListen, err = ops.ListenAddress(getenv("SPIKE_NEXUS_OPS_LISTEN"), "127.0.0.1:8554"); err != nil {
		errs = append(errs, fmt.Errorf("SPIKE_NEXUS_OPS_LISTEN: %w", err))
	}
	if c.Pprof, err = strconv.ParseBool(env("SPIKE_NEXUS_PPROF", "false")); err != nil {
		errs = append(errs, errors.New("SPIKE_NEXUS_PPROF: must be true or false"))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("SPIKE_DATABASE_URL: required, e.g. postgres://spike_nexus@127.0.0.1:5432/spike"))
	}
	switch p := env("SPIKE_DATABASE_POOLER", "none"); p {
	case "none":
		c.DatabasePooler = postgres.NoPooler
	case string(postgres.PgBouncerTransaction):
		c.DatabasePooler = postgres.PgBouncerTransaction
	default:
		errs = append(errs, fmt.Errorf("SPIKE_DATABASE_POOLER: %q: must be none or %s", p, postgres.PgBouncerTransaction))
	}
	if c.DevAllowPrivilegedRole, err = strconv.ParseBool(env("SPIKE_DEV_ALLOW_PRIVILEGED_DB_ROLE", "false")); err != nil {
		errs = append(errs, errors.New("SPIKE_DEV_ALLOW_PRIVILEGED_DB_ROLE: must be true or false"))
	}
	maxConns, err := strconv.ParseInt(env("SPIKE_DB_MAX_CONNS", "16"), 10, 32)
	if err != nil || maxConns < 1 || maxConns > 1000 {
		errs = append(errs, errors.New("SPIKE_DB_MAX_CONNS: must be a number from 1 to 1000"))
	}
	c.MaxConns = int32(maxConns)
	maxVersions, err := strconv.ParseInt(env("SPIKE_MAX_VERSIONS", "10"), 10, 32)
	if err != nil || maxVersions < 1 || maxVersions > secret.MaxMaxVersions {
		errs = append(errs, fmt.Errorf("SPIKE_MAX_VERSIONS: must be a number from 1 to %d", secret.MaxMaxVersions))
	}
	c.MaxVersions = int32(maxVersions)
	c.KeeperURLs, err = keeperURLs(getenv("SPIKE_KEEPER_URLS"), getenv("SPIKE_KEEPER_URL"))
	if err != nil {
		errs = append(errs, err)
	}
	if v := getenv("SPIKE_KEEPER_ID"); v != "" {
		c.KeeperID, err = spiffeid.FromString(v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("SPIKE_KEEPER_ID: %w", err))
		case len(c.KeeperURLs) > 1:
			errs = append(errs, errors.New("SPIKE_KEEPER_ID: names one Keeper, but SPIKE_KEEPER_URLS has several; leave it unset to accept any spike/keeper/<name> ID of the trust domain"))
		}
	}
	for _, s := range strings.Split(env("SPIKE_ADMIN_IDS", identity.Pilot(td).String()), ",") {
		id, err := spiffeid.FromString(strings.TrimSpace(s))
		if err != nil {
			errs = append(errs, fmt.Errorf("SPIKE_ADMIN_IDS: %q: %w", s, err))
			continue
		}
		c.Admins = append(c.Admins, id)
	}
	c.CheckInterval, err = time.ParseDuration(env("SPIKE_KEEPER_CHECK_INTERVAL", "1s"))
	if err != nil || c.CheckInterval < 100*time.Millisecond || c.CheckInterval > time.Minute {
		errs = append(errs, errors.New("SPIKE_KEEPER_CHECK_INTERVAL: must be a duration from 100ms to 1m"))
	}
	c.DataKeyCacheTTL, err = time.ParseDuration(env("SPIKE_DATA_KEY_CACHE_TTL", envelope.DefaultCacheTTL.String()))
	if err != nil || c.DataKeyCacheTTL < envelope.MinCacheTTL || c.DataKeyCacheTTL > envelope.MaxCacheTTL {
		errs = append(errs, fmt.Errorf("SPIKE_DATA_KEY_CACHE_TTL: must be a duration from %s to %s", envelope.MinCacheTTL, envelope.MaxCacheTTL))
	}
	c.TokenTTL, err = time.ParseDuration(env("SPIKE_ADMIN_TOKEN_TTL", "8h"))
	if err != nil || c.TokenTTL < time.Minute {
		errs = append(errs, errors.New("SPIKE_ADMIN_TOKEN_TTL: must be a duration of at least 1m"))
	}
	c.MaxTokenTTL, err = time.ParseDuration(env("SPIKE_ADMIN_TOKEN_MAX_TTL", "24h"))
	if err != nil || c.MaxTokenTTL < c.TokenTTL {
		errs = append(errs, errors.New("SPIKE_ADMIN_TOKEN_MAX_TTL: must be a duration no shorter than SPIKE_ADMIN_TOKEN_TTL"))
	}
	errs = append(errs, watchConfig(&c, env)...)
	c.AuditLog = getenv("SPIKE_AUDIT_LOG")
	if err := c.LogLevel.UnmarshalText([]byte(env("SPIKE_LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, fmt.Errorf("SPIKE_LOG_LEVEL: %w", err))
	}
	return c, errors.Join(errs...)
}

// MigrateConfig is the configuration of spike-nexus migrate, read from the
// environment once (LoadMigrateConfig).
type MigrateConfig struct {
	// OwnerURL connects as the role that owns SPIKE's schema.
	OwnerURL string
	// Role is the role Nexus serves as, which is granted what it needs.
	Role     string
	LogLevel slog.Level
}

// LoadMigrateConfig reads the configuration of spike-nexus migrate from
// the environment through getenv. Every problem is reported, not only the
// first.
func LoadMigrateConfig(getenv func(string) string) (MigrateConfig, error) {
	var errs []error
	c := MigrateConfig{OwnerURL: getenv("SPIKE_DATABASE_OWNER_URL"), Role: getenv("SPIKE_DATABASE_ROLE")}
	if c.OwnerURL == "" {
		errs = append(errs, errors.New("SPIKE_DATABASE_OWNER_URL: required: the database as the role that owns SPIKE's schema, e.g. postgres://spike@127.0.0.1:5432/spike"))
	}
	if c.Role == "" {
		errs = append(errs, errors.New("SPIKE_DATABASE_ROLE: required: the role Nexus serves as (the user of its SPIKE_DATABASE_URL), e.g. spike_nexus"))
	}
	level := getenv("SPIKE_LOG_LEVEL")
	if level == "" {
		level = "info"
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		errs = append(errs, fmt.Errorf("SPIKE_LOG_LEVEL: %w", err))
	}
	return c, errors.Join(errs...)
}

// maxKeepers bounds SPIKE_KEEPER_URLS.
const maxKeepers = 16

// keeperURLs reads the Keepers' URLs: a comma-separated list, or one URL
// in the older single-Keeper variable; by default the local Keeper.
func keeperURLs(list, single string) ([]*url.URL, error) {
	name := "SPIKE_KEEPER_URLS"
	switch {
	case list != "" && single != "":
		return nil, errors.New("SPIKE_KEEPER_URL and SPIKE_KEEPER_URLS: set one of them")
	case single != "":
		list, name = single, "SPIKE_KEEPER_URL"
	case list == "":
		list = "https://127.0.0.1:8443"
	}
	var urls []*url.URL
	seen := map[string]bool{}
	for f := range strings.SplitSeq(list, ",") {
		f = strings.TrimSpace(f)
		u, err := url.Parse(f)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("%s: %q is not an https:// URL", name, f)
		}
		if seen[u.String()] {
			return nil, fmt.Errorf("%s: %s is listed twice", name, u)
		}
		seen[u.String()] = true
		urls = append(urls, u)
	}
	if len(urls) > maxKeepers {
		return nil, fmt.Errorf("%s: at most %d Keepers, got %d", name, maxKeepers, len(urls))
	}
	return urls, nil
}

// watchConfig reads the bounds of WatchSecrets.
func watchConfig(c *Config, env func(name, def string) string) []error {
	var errs []error
	duration := func(name string, def, lo, hi time.Duration) time.Duration {
		d, err := time.ParseDuration(env(name, def.String()))
		if err != nil || d < lo || d > hi {
			errs = append(errs, fmt.Errorf("%s: must be a duration from %s to %s", name, lo, hi))
		}
		return d
	}
	count := func(name string, def, hi int) int {
		n, err := strconv.Atoi(env(name, strconv.Itoa(def)))
		if err != nil || n < 1 || n > hi {
			errs = append(errs, fmt.Errorf("%s: must be a number from 1 to %d", name, hi))
		}
		return n
	}
	c.Watch = server.WatchConfig{
		PollInterval:        duration("SPIKE_WATCH_POLL_INTERVAL", server.DefaultWatchPollInterval, 20*time.Millisecond, 5*time.Second),
		Heartbeat:           duration("SPIKE_WATCH_HEARTBEAT", server.DefaultWatchHeartbeat, time.Second, 5*time.Minute),
		IdleTimeout:         duration("SPIKE_WATCH_IDLE_TIMEOUT", server.DefaultWatchIdleTimeout, time.Minute, 50*time.Minute),
		MaxStreamsPerCaller: count("SPIKE_WATCH_MAX_STREAMS_PER_CALLER", server.DefaultWatchMaxStreamsPerCaller, 1000),
		MaxStreams:          count("SPIKE_WATCH_MAX_STREAMS", server.DefaultWatchMaxStreams, 100000),
	}
	c.ChangeRetention = duration("SPIKE_WATCH_RETENTION", server.ChangeRetention, server.ChangeRetention, 30*24*time.Hour)
	return errs
}
