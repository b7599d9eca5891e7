package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// serviceOf returns the loaded service name, to be changed in place.
func serviceOf(t *testing.T, s *stack, name string) *types.ServiceConfig {
	t.Helper()
	for i := range s.services {
		if s.services[i].Name == name {
			return &s.services[i]
		}
	}
	t.Fatalf("no service %s in the stack", name)
	return nil
}

// setEnv sets (or, with value nil, removes) a variable of a service.
func setEnv(svc *types.ServiceConfig, name string, value *string) {
	env := types.MappingWithEquals{}
	for k, v := range svc.Environment {
		env[k] = v
	}
	if value == nil {
		delete(env, name)
	} else {
		env[name] = value
	}
	svc.Environment = env
}

func ptr(s string) *string { return &s }

// TestTeamChecksCatchMistakes breaks the loaded project one way at a time,
// in what a stack for a team adds (digests, limits, log rotation, the
// backup service), and expects the matching complaint.
func TestTeamChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	otherDigest := "@sha256:" + strings.Repeat("0", 64)
	tests := []struct {
		name   string
		mutate func(svc func(name string) *types.ServiceConfig)
		want   string // a problem must contain this
	}{
		{"image by tag only", func(svc func(string) *types.ServiceConfig) {
			svc("spire-server").Image = "ghcr.io/spiffe/spire-server:1.13.3"
		}, "service spire-server: image ghcr.io/spiffe/spire-server:1.13.3 is not pinned by digest: write name:tag@sha256:<digest> (`docker buildx imagetools inspect ghcr.io/spiffe/spire-server:1.13.3` prints the digest"},
		{"image by digest without a tag", func(svc func(string) *types.ServiceConfig) {
			pg := svc("postgres")
			pg.Image = strings.Replace(pg.Image, ":15.12@", "@", 1)
		}, "service postgres: image postgres@sha256:8f6fbd24a12304d2adc332a2162ee9ff9d6044045a0b07f94d6e53e73125e11c has a digest but no tag"},
		{"truncated digest", func(svc func(string) *types.ServiceConfig) {
			agent := svc("spire-agent")
			agent.Image = agent.Image[:len(agent.Image)-8]
		}, "service spire-agent: image ghcr.io/spiffe/spire-agent:1.13.3@sha256:df9502625d910710f48b27eb861345ffeb3cd91c79a874f989f2150c: sha256:df9502625d910710f48b27eb861345ffeb3cd91c79a874f989f2150c is not a sha256 digest (sha256: and 64 hex digits)"},
		{"one image, two references", func(svc func(string) *types.ServiceConfig) {
			svc("db-roles").Image = "postgres:15.12" + otherDigest
		}, "service backup pulls postgres as postgres:15.12@sha256:8f6fbd24a12304d2adc332a2162ee9ff9d6044045a0b07f94d6e53e73125e11c, but service db-roles as postgres:15.12" + otherDigest + ": pull one reference"},
		{"no memory limit", func(svc func(string) *types.ServiceConfig) {
			svc("nexus").Deploy.Resources.Limits.MemoryBytes = 0
		}, "service nexus has no memory limit: set deploy.resources.limits.memory"},
		{"no limits at all", func(svc func(string) *types.ServiceConfig) {
			svc("postgres").Deploy = nil
		}, "service postgres has no CPU limit: set deploy.resources.limits.cpus"},
		{"keeper too small to unseal", func(svc func(string) *types.ServiceConfig) {
			svc("keeper-2").Deploy.Resources.Limits.MemoryBytes = 128 << 20
		}, "service keeper-2: memory limit 128 MiB leaves no room for an Argon2id derivation of up to 256 MiB (keyring.MaxMemoryKiB) plus the program: unseal would be killed; allow at least 320 MiB"},
		{"backup without limits", func(svc func(string) *types.ServiceConfig) {
			svc("backup").Deploy = nil
		}, "service backup has no memory limit"},
		{"no logging", func(svc func(string) *types.ServiceConfig) {
			svc("spire-agent").Logging = nil
		}, "service spire-agent sets no logging driver: use driver json-file with options max-size and max-file"},
		{"logs to syslog", func(svc func(string) *types.ServiceConfig) {
			svc("keeper").Logging = &types.LoggingConfig{Driver: "syslog"}
		}, "service keeper logs with driver syslog: use json-file (or local) with max-size and max-file"},
		{"logs without max-size", func(svc func(string) *types.ServiceConfig) {
			svc("nexus").Logging = &types.LoggingConfig{Driver: "json-file", Options: types.Options{"max-file": "3"}}
		}, `service nexus: logging option max-size="": set a size such as 10m`},
		{"logs without max-file", func(svc func(string) *types.ServiceConfig) {
			svc("postgres").Logging = &types.LoggingConfig{Driver: "json-file", Options: types.Options{"max-size": "10m", "max-file": "0"}}
		}, `service postgres: logging option max-file="0": set how many rotated files to keep`},
		{"no backup service", func(svc func(string) *types.ServiceConfig) {
			b := svc("backup")
			b.Command = []string{"sh", "-c", "echo no backup"}
			b.Volumes = b.Volumes[1:]
		}, "the stack has no backup service: a one-shot in a profile running pg_dump --format=custom into a volume"},
		{"backup as a plain-text dump", func(svc func(string) *types.ServiceConfig) {
			b := svc("backup")
			b.Command = []string{"pg_dump", "--format=plain", "--file=/backups/x.sql"}
		}, "backup service backup: pg_dump without --format=custom"},
		{"backup started by up", func(svc func(string) *types.ServiceConfig) {
			svc("backup").Profiles = nil
		}, "backup service backup: not in a profile: `docker compose up` would run it with the stack"},
		{"backup restarting", func(svc func(string) *types.ServiceConfig) {
			svc("backup").Restart = types.RestartPolicyUnlessStopped
		}, `backup service backup: restart is "unless-stopped": a backup runs once and exits`},
		{"backup as root", func(svc func(string) *types.ServiceConfig) {
			svc("backup").User = ""
		}, "backup service backup: runs as root or as the image's default user"},
		{"backup with a writable root", func(svc func(string) *types.ServiceConfig) {
			svc("backup").ReadOnly = false
		}, "backup service backup: read_only is not set"},
		{"backup keeping its capabilities", func(svc func(string) *types.ServiceConfig) {
			svc("backup").CapDrop = nil
		}, "backup service backup: cap_drop does not drop ALL capabilities"},
		{"backup allowed new privileges", func(svc func(string) *types.ServiceConfig) {
			svc("backup").SecurityOpt = nil
		}, "backup service backup: security_opt lacks no-new-privileges:true"},
		{"backup as the owner", func(svc func(string) *types.ServiceConfig) {
			setEnv(svc("backup"), "PGUSER", ptr("spike"))
		}, "backup service backup: connects as spike, the owner of SPIKE's schema"},
		{"backup as nexus", func(svc func(string) *types.ServiceConfig) {
			setEnv(svc("backup"), "PGUSER", ptr("spike_nexus"))
		}, "backup service backup: connects as spike_nexus, Nexus's role"},
		{"backup as a role nobody made read-only", func(svc func(string) *types.ServiceConfig) {
			setEnv(svc("backup"), "PGUSER", ptr("backup_admin"))
		}, "backup service backup connects as backup_admin, but no one-shot grants it pg_read_all_data"},
		{"backup with a password in its environment", func(svc func(string) *types.ServiceConfig) {
			setEnv(svc("backup"), "PGPASSWORD", ptr("hunter2"))
		}, "backup service backup: sets PGPASSWORD"},
		{"backup without TLS verification", func(svc func(string) *types.ServiceConfig) {
			setEnv(svc("backup"), "PGSSLMODE", ptr("require"))
		}, `backup service backup: PGSSLMODE="require": use verify-full`},
		{"backup without the CA", func(svc func(string) *types.ServiceConfig) {
			b := svc("backup")
			var kept []types.ServiceVolumeConfig
			for _, v := range b.Volumes {
				if v.Source != "postgres-tls" {
					kept = append(kept, v)
				}
			}
			b.Volumes = kept
		}, `backup service backup: PGSSLROOTCERT="/run/spike/postgres-tls/ca.pem" is not on a mounted volume`},
		{"backup to another host", func(svc func(string) *types.ServiceConfig) {
			setEnv(svc("backup"), "PGHOST", ptr("db.example.org"))
		}, `backup service backup: PGHOST="db.example.org" names no PostgreSQL service of the stack`},
		{"backup not waiting for the database", func(svc func(string) *types.ServiceConfig) {
			b := svc("backup")
			b.DependsOn = types.DependsOnConfig{"db-roles": b.DependsOn["db-roles"]}
		}, "backup service backup: does not wait for postgres to be healthy"},
		{"backup holding the owner's password", func(svc func(string) *types.ServiceConfig) {
			b := svc("backup")
			b.Volumes = append(b.Volumes, types.ServiceVolumeConfig{Type: types.VolumeTypeVolume, Source: "postgres-secret", Target: "/run/spike/postgres", ReadOnly: true})
		}, "backup service backup: mounts volume postgres-secret, which holds the owner's passfile"},
		{"backup holding nexus's password", func(svc func(string) *types.ServiceConfig) {
			b := svc("backup")
			b.Volumes = append(b.Volumes, types.ServiceVolumeConfig{Type: types.VolumeTypeVolume, Source: "nexus-db-secret", Target: "/run/spike/nexus-db", ReadOnly: true})
		}, "backup service backup: mounts volume nexus-db-secret, which holds Nexus's passfile"},
		{"backup into the container", func(svc func(string) *types.ServiceConfig) {
			setEnv(svc("backup"), "BACKUP_DIR", ptr("/tmp/backups"))
		}, "backup service backup: BACKUP_DIR=/tmp/backups is no named volume's mount point"},
		{"backup into a read-only volume", func(svc func(string) *types.ServiceConfig) {
			b := svc("backup")
			for i := range b.Volumes {
				if b.Volumes[i].Source == "backups" {
					b.Volumes[i].ReadOnly = true
				}
			}
		}, "backup service backup: mounts volume backups read-only at BACKUP_DIR=/backups"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := load(t, nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.mutate(func(name string) *types.ServiceConfig { return serviceOf(t, s, name) })
			got := problems(s)
			for _, p := range got {
				if strings.Contains(p, tt.want) {
					return
				}
			}
			t.Errorf("no problem reported contains %q; got:\n%s", tt.want, strings.Join(got, "\n"))
		})
	}
}

// TestTeamChecksCatchFileMistakes breaks the files themselves where the
// mistake is in what the loader resolves away (a ${VARIABLE}) or in a
// script the stack runs.
func TestTeamChecksCatchFileMistakes(t *testing.T) {
	t.Parallel()
	const compose, roles, hba = "docker-compose.yml", "scripts/db-roles.sh", "postgres/pg_hba.conf"
	const nexusPort = `"127.0.0.1:${SPIKE_NEXUS_HOST_PORT:-8553}:8553"`
	zeros := strings.Repeat("0", 64)
	tests := []struct {
		name     string
		file     string // relative to deploy/compose
		old, new string // old must occur exactly once in file
		want     string
	}{
		{"fixed host port", compose, nexusPort, `"127.0.0.1:8553:8553"`,
			`service nexus publishes host port "8553": write it as ${SPIKE_NEXUS_HOST_PORT:-<port>}`},
		{"host port variable without a default", compose, nexusPort, `"127.0.0.1:${SPIKE_NEXUS_HOST_PORT}:8553"`,
			`service nexus publishes host port "${SPIKE_NEXUS_HOST_PORT}": write it as ${SPIKE_NEXUS_HOST_PORT:-<port>}`},
		{"host port variable of another name", compose, nexusPort, `"127.0.0.1:${NEXUS_PORT:-8553}:8553"`,
			`service nexus publishes host port "${NEXUS_PORT:-8553}"`},
		{"host port in the long syntax", compose, "      - " + nexusPort + "\n",
			"      - target: 8553\n        host_ip: 127.0.0.1\n        published: \"8553\"\n",
			`service nexus publishes host port "8553": write it as ${SPIKE_NEXUS_HOST_PORT:-<port>}`},
		{"image default without a digest", compose,
			"${SPIKE_POSTGRES_IMAGE:-postgres:15.12@sha256:8f6fbd24a12304d2adc332a2162ee9ff9d6044045a0b07f94d6e53e73125e11c}",
			"${SPIKE_POSTGRES_IMAGE:-postgres:15.12}",
			"service backup: image postgres:15.12 is not pinned by digest"},
		{"builder's SPIRE server of another release", "Dockerfile",
			"FROM ghcr.io/spiffe/spire-server:1.13.3@sha256:16607dd148640cecbfba5cc620d0ba346350eacd5bc4105448fed867f6c08c77 AS spire-server",
			"FROM ghcr.io/spiffe/spire-server:1.13.2@sha256:" + zeros + " AS spire-server",
			"service spire-server pulls ghcr.io/spiffe/spire-server as ghcr.io/spiffe/spire-server:1.13.3@sha256:16607dd148640cecbfba5cc620d0ba346350eacd5bc4105448fed867f6c08c77, but deploy/compose/Dockerfile:87: FROM as ghcr.io/spiffe/spire-server:1.13.2@sha256:" + zeros + ": pull one reference"},
		{"base image without a digest", "Dockerfile",
			"FROM busybox:1.37.0@sha256:9db7b59979c38555a39def84a31fb98b5296952f9e3afd4f6f11f05b07adfab0 AS tools",
			"FROM busybox:1.37.0 AS tools",
			"deploy/compose/Dockerfile:88: FROM: image busybox:1.37.0 is not pinned by digest"},
		{"two bases for the program images", "Dockerfile",
			"FROM gcr.io/distroless/static-debian12:nonroot@sha256:b7bb25d9f7c31d2bdd1982feb4dafcaf137703c7075dbe2febb41c24212b946f AS pilot",
			"FROM gcr.io/distroless/static-debian12:nonroot@sha256:" + zeros + " AS pilot",
			"deploy/compose/Dockerfile:52: FROM pulls gcr.io/distroless/static-debian12 as gcr.io/distroless/static-debian12:nonroot@sha256:b7bb25d9f7c31d2bdd1982feb4dafcaf137703c7075dbe2febb41c24212b946f, but deploy/compose/Dockerfile:68: FROM as gcr.io/distroless/static-debian12:nonroot@sha256:" + zeros + ": pull one reference"},
		{"COPY --from an image without a digest", "Dockerfile",
			"COPY --from=spire-server /opt", "COPY --from=ghcr.io/spiffe/spire-server:1.13.3 /opt",
			"deploy/compose/Dockerfile:89: COPY --from: image ghcr.io/spiffe/spire-server:1.13.3 is not pinned by digest"},
		{"backup script dumping plain SQL", "scripts/backup.sh",
			"pg_dump --format=custom ", "pg_dump --format=plain ",
			"backup service backup: pg_dump without --format=custom"},
		{"backup role never granted reading", roles,
			"GRANT pg_read_all_data TO spike_backup;\n", "",
			"backup service backup connects as spike_backup, but no one-shot grants it pg_read_all_data"},
		{"backup role granted writing", roles,
			"GRANT pg_read_all_data TO spike_backup;\n", "GRANT pg_read_all_data TO spike_backup;\nGRANT pg_write_all_data TO spike_backup;\n",
			"backup service backup: its role spike_backup is granted pg_write_all_data: a backup needs pg_read_all_data only"},
		{"backup role granted a table", roles,
			"GRANT pg_read_all_data TO spike_backup;\n", "GRANT pg_read_all_data TO spike_backup;\nGRANT INSERT ON ALL TABLES IN SCHEMA spike TO spike_backup;\n",
			"backup service backup: its role spike_backup is granted INSERT ON ALL TABLES IN SCHEMA spike"},
		{"backup role writable by default", roles,
			"ALTER ROLE spike_backup SET default_transaction_read_only = on;\n", "",
			"backup service backup: its role spike_backup is not read-only by default"},
		{"server with the image's pg_hba.conf", compose,
			"      - -c\n      - hba_file=/etc/spike/pg_hba.conf\n", "",
			"service postgres runs with the image's pg_hba.conf, which accepts clients that do not ask for TLS"},
		{"hba_file not mounted", compose,
			"      - ./postgres/pg_hba.conf:/etc/spike/pg_hba.conf:ro\n", "",
			"service postgres: hba_file=/etc/spike/pg_hba.conf is not a file bind-mounted from the repository"},
		{"server accepting plain TCP", hba,
			"hostssl     all       all   all      scram-sha-256", "host        all       all   all      scram-sha-256",
			"service postgres: deploy/compose/postgres/pg_hba.conf:10 accepts connections without TLS (host all all all scram-sha-256): use hostssl"},
		{"server trusting plain TCP", hba,
			"hostnossl   all       all   all      reject", "hostnossl   all       all   all      trust",
			"service postgres: deploy/compose/postgres/pg_hba.conf:11 accepts connections without TLS (hostnossl all all all trust): end hostnossl lines with reject"},
		{"server refusing every TCP client", hba,
			"hostssl     all       all   all      scram-sha-256\n", "",
			"service postgres: deploy/compose/postgres/pg_hba.conf has no hostssl line"},
		{"backup role a superuser", roles,
			"ALTER ROLE spike_backup WITH LOGIN NOSUPERUSER", "ALTER ROLE spike_backup WITH LOGIN SUPERUSER",
			"backup service backup: its role spike_backup gets SUPERUSER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, dir := paths(t)
			data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(data), tt.old); n != 1 {
				t.Fatalf("%s holds %q %d times, want once: update this test", tt.file, tt.old, n)
			}
			s, err := load(t, map[string]string{tt.file: strings.Replace(string(data), tt.old, tt.new, 1)})
			var got []string
			if err != nil {
				got = []string{err.Error()}
			} else {
				got = problems(s)
			}
			for _, p := range got {
				if strings.Contains(p, tt.want) {
					return
				}
			}
			t.Errorf("no problem reported contains %q; got:\n%s", tt.want, strings.Join(got, "\n"))
		})
	}
}

// TestTeamChecksAcceptAlternatives: the service-level spellings of limits
// (mem_limit, cpus) and the local log driver are as good as the ones the
// file uses.
func TestTeamChecksAcceptAlternatives(t *testing.T) {
	t.Parallel()
	s, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := serviceOf(t, s, "nexus")
	n.Deploy = nil
	n.MemLimit = 512 << 20
	n.CPUS = 1.5
	n.Logging = &types.LoggingConfig{Driver: "local", Options: types.Options{"max-size": "20m", "max-file": "5"}}
	if got := problems(s); len(got) != 0 {
		t.Errorf("problems with mem_limit, cpus and the local log driver:\n%s", strings.Join(got, "\n"))
	}
}

// TestKeeperKDFCap guards keeperKDFMemory against the Keeper's source.
func TestKeeperKDFCap(t *testing.T) {
	t.Parallel()
	root, _ := paths(t)
	data, err := os.ReadFile(filepath.Join(root, "keeper", "internal", "keyring", "params.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`MaxMemoryKiB\s*=\s*(\d+)\s*<<\s*10\b`).FindSubmatch(data)
	if m == nil {
		t.Fatal("keeper/internal/keyring/params.go: MaxMemoryKiB = N << 10 not found: update keeperKDFMemory and this test")
	}
	if got, want := string(m[1])+" MiB", "256 MiB"; got != want || keeperKDFMemory != 256<<20 {
		t.Errorf("keyring.MaxMemoryKiB is %s, keeperKDFMemory %d MiB: make them agree", got, keeperKDFMemory>>20)
	}
}
