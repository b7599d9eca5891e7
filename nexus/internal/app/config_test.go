package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/nexus/internal/postgres"
)

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := LoadConfig(envFrom(map[string]string{"SPIKE_DATABASE_URL": "postgres://x@h/db"}))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{c.TrustDomain.String(), c.Listen, c.OpsListen, fmt.Sprint(c.KeeperURLs), c.KeeperID.String(), c.CheckInterval.String()}
	want := []string{"spike.local", "127.0.0.1:8553", "127.0.0.1:8554", "[https://127.0.0.1:8443]", "", "1s"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if len(c.Admins) != 1 || c.Admins[0].String() != "spiffe://spike.local/spike/pilot" {
		t.Errorf("admins = %v, want only the Pilot ID", c.Admins)
	}
	if c.Pprof {
		t.Error("pprof on by default")
	}
	if c.DatabasePooler != postgres.NoPooler {
		t.Errorf("pooler %q by default, want none", c.DatabasePooler)
	}
	if c.MaxConns != 16 || c.MaxVersions != 10 {
		t.Errorf("max conns %d, max versions %d; want 16 and 10", c.MaxConns, c.MaxVersions)
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{"SPIKE_DATABASE_URL": "postgres://x@h/db"}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(Config) bool
	}{
		{name: "database required", env: map[string]string{}, wantErr: "SPIKE_DATABASE_URL"},
		{name: "admins list", env: map[string]string{"SPIKE_ADMIN_IDS": "spiffe://spike.local/a, spiffe://spike.local/b"},
			check: func(c Config) bool {
				return len(c.Admins) == 2 && c.Admins[0].String() == "spiffe://spike.local/a" && c.Admins[1].String() == "spiffe://spike.local/b"
			}},
		{name: "bad admin ID", env: map[string]string{"SPIKE_ADMIN_IDS": "spiffe://spike.local/a,not-an-id"}, wantErr: "SPIKE_ADMIN_IDS"},
		{name: "empty admin entry", env: map[string]string{"SPIKE_ADMIN_IDS": "spiffe://spike.local/a,"}, wantErr: "SPIKE_ADMIN_IDS"},
		{name: "trust domain changes defaults", env: map[string]string{"SPIKE_TRUST_DOMAIN": "example.org"},
			check: func(c Config) bool {
				return c.Admins[0].String() == "spiffe://example.org/spike/pilot"
			}},
		{name: "bad trust domain", env: map[string]string{"SPIKE_TRUST_DOMAIN": "Bad Domain"}, wantErr: "SPIKE_TRUST_DOMAIN"},
		{name: "keeper URL must be https", env: map[string]string{"SPIKE_KEEPER_URL": "http://k:1"}, wantErr: "SPIKE_KEEPER_URL"},
		{name: "keeper URLs", env: map[string]string{"SPIKE_KEEPER_URLS": "https://k1:1, https://k2:2,https://k3:3"},
			check: func(c Config) bool {
				return fmt.Sprint(c.KeeperURLs) == "[https://k1:1 https://k2:2 https://k3:3]" && c.KeeperID.IsZero()
			}},
		{name: "data key cache TTL", env: map[string]string{"SPIKE_DATA_KEY_CACHE_TTL": "1s"},
			check: func(c Config) bool { return c.DataKeyCacheTTL == time.Second }},
		{name: "data key cache TTL bounds", env: map[string]string{"SPIKE_DATA_KEY_CACHE_TTL": "2h"}, wantErr: "SPIKE_DATA_KEY_CACHE_TTL: must be a duration from 1s to 1h0m0s"},
		{name: "keeper URLs each https", env: map[string]string{"SPIKE_KEEPER_URLS": "https://k1:1,http://k2:2"}, wantErr: `SPIKE_KEEPER_URLS: "http://k2:2"`},
		{name: "keeper URL listed twice", env: map[string]string{"SPIKE_KEEPER_URLS": "https://k1:1,https://k1:1"}, wantErr: "listed twice"},
		{name: "keeper URL and URLs", env: map[string]string{"SPIKE_KEEPER_URLS": "https://k1:1", "SPIKE_KEEPER_URL": "https://k1:1"}, wantErr: "set one of them"},
		{name: "one keeper ID for several keepers", env: map[string]string{"SPIKE_KEEPER_URLS": "https://k1:1,https://k2:2", "SPIKE_KEEPER_ID": "spiffe://spike.local/spike/keeper/1"}, wantErr: "SPIKE_KEEPER_ID: names one Keeper"},
		{name: "one keeper ID", env: map[string]string{"SPIKE_KEEPER_ID": "spiffe://spike.local/spike/keeper/a"},
			check: func(c Config) bool { return c.KeeperID.String() == "spiffe://spike.local/spike/keeper/a" }},
		{name: "pool size bounds", env: map[string]string{"SPIKE_DB_MAX_CONNS": "0"}, wantErr: "SPIKE_DB_MAX_CONNS"},
		{name: "pooler", env: map[string]string{"SPIKE_DATABASE_POOLER": "pgbouncer-transaction"},
			check: func(c Config) bool { return c.DatabasePooler == postgres.PgBouncerTransaction }},
		{name: "no pooler", env: map[string]string{"SPIKE_DATABASE_POOLER": "none"},
			check: func(c Config) bool { return c.DatabasePooler == postgres.NoPooler }},
		{name: "bad pooler", env: map[string]string{"SPIKE_DATABASE_POOLER": "pgbouncer"}, wantErr: "SPIKE_DATABASE_POOLER: \"pgbouncer\": must be none or pgbouncer-transaction"},
		{name: "max versions bounds", env: map[string]string{"SPIKE_MAX_VERSIONS": "1001"}, wantErr: "SPIKE_MAX_VERSIONS"},
		{name: "max versions", env: map[string]string{"SPIKE_MAX_VERSIONS": "3"}, check: func(c Config) bool { return c.MaxVersions == 3 }},
		{name: "check interval", env: map[string]string{"SPIKE_KEEPER_CHECK_INTERVAL": "250ms"},
			check: func(c Config) bool { return c.CheckInterval == 250*time.Millisecond }},
		{name: "check interval too short", env: map[string]string{"SPIKE_KEEPER_CHECK_INTERVAL": "1ms"}, wantErr: "SPIKE_KEEPER_CHECK_INTERVAL"},
		{name: "log level", env: map[string]string{"SPIKE_LOG_LEVEL": "loud"}, wantErr: "SPIKE_LOG_LEVEL"},
		{name: "ops listen", env: map[string]string{"SPIKE_NEXUS_OPS_LISTEN": "0.0.0.0:9554"},
			check: func(c Config) bool { return c.OpsListen == "0.0.0.0:9554" }},
		{name: "ops listen off", env: map[string]string{"SPIKE_NEXUS_OPS_LISTEN": "off"},
			check: func(c Config) bool { return c.OpsListen == "" }},
		{name: "pprof", env: map[string]string{"SPIKE_NEXUS_PPROF": "true"}, check: func(c Config) bool { return c.Pprof }},
		{name: "bad pprof", env: map[string]string{"SPIKE_NEXUS_PPROF": "yes please"}, wantErr: "SPIKE_NEXUS_PPROF"},
		{name: "bad ops listen", env: map[string]string{"SPIKE_NEXUS_OPS_LISTEN": "nowhere"}, wantErr: "SPIKE_NEXUS_OPS_LISTEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			if tt.name != "database required" {
				for k, v := range base {
					env[k] = v
				}
			}
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := LoadConfig(envFrom(env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("config = %+v", c)
			}
		})
	}
}
