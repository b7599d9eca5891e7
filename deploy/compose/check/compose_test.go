package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// paths returns the repository root and the deployment directory.
func paths(t *testing.T) (root, dir string) {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(dir)), dir
}

// load loads the deployment, with some of its files replaced.
func load(t *testing.T, overrides map[string]string) (*stack, error) {
	t.Helper()
	root, dir := paths(t)
	return loadStack(t.Context(), root, dir, overrides)
}

// problems runs every check.
func problems(s *stack) []string {
	var out []string
	for _, c := range checks {
		out = append(out, c.run(s)...)
	}
	return out
}

// TestComposeStack checks deploy/compose/docker-compose.yml, the Dockerfile
// and the files they use, rule by rule.
func TestComposeStack(t *testing.T) {
	t.Parallel()
	s, err := load(t, nil)
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, p := range c.run(s) {
				t.Error(p)
			}
		})
	}
}

// TestChecksCatchMistakes breaks the deployment one way at a time and
// expects the checks to say so: a check that passes on a broken stack
// checks nothing.
func TestChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	const compose, dockerfile = "docker-compose.yml", "Dockerfile"
	// Nexus's list of the Keepers, a line of the Compose file.
	const keeperURLs = "      SPIKE_KEEPER_URLS: https://keeper:8443,https://keeper-2:8443,https://keeper-3:8443\n"
	tests := []struct {
		name     string
		file     string // relative to deploy/compose
		old, new string // old must occur exactly once in file
		want     string // a problem must contain this
	}{
		{"keeper probes readyz", compose,
			`"http://127.0.0.1:8444/healthz"`, `"http://127.0.0.1:8444/readyz"`,
			"service keeper: the health check probes /readyz; probe /healthz"},
		{"health check on the wrong port", compose,
			`"http://127.0.0.1:8554/healthz"`, `"http://127.0.0.1:8553/healthz"`,
			"service nexus: the health check probes http://127.0.0.1:8553/healthz, but the ops listener is SPIKE_NEXUS_OPS_LISTEN=0.0.0.0:8554"},
		{"long-running service without health check", compose,
			`      test: ["CMD", "/opt/spire/bin/spire-server", "healthcheck"]`, `      disable: true`,
			"service spire-server has no healthcheck and is not a one-shot"},
		{"one-shot without restart no", compose,
			"    command: [\"bootstrap.sh\"]\n    user: \"0:0\"\n    network_mode: none\n    restart: \"no\"\n",
			"    command: [\"bootstrap.sh\"]\n    user: \"0:0\"\n    network_mode: none\n",
			"service bootstrap has no healthcheck and is not a one-shot"},
		{"waiting for health of a one-shot", compose,
			"      spire-server:\n        condition: service_healthy\n\n  spire-agent:",
			"      spire-server:\n        condition: service_started\n\n  spire-agent:",
			"service register waits only for spire-server to start: wait with condition service_healthy"},
		{"one-shot nobody awaits", compose,
			"      register:\n        condition: service_completed_successfully\n\n  # Three Keepers",
			"      register:\n        condition: service_started\n\n  # Three Keepers",
			"service spire-agent starts as soon as one-shot register starts"},
		{"one-shot awaited by nobody", compose,
			"\nvolumes:\n", "\n  setup:\n    image: busybox:1.37.0\n    restart: \"no\"\n\nvolumes:\n",
			"one-shot setup is awaited by no long-running service"},
		{"waiting for the health of a one-shot", compose,
			"    register:\n      condition: service_completed_successfully\n\nx-keeper-env:",
			"    register:\n      condition: service_healthy\n\nx-keeper-env:",
			"service keeper waits for register to be healthy, but register has no healthcheck"},
		{"undeclared volume", compose,
			"  pilot-home:\n", "",
			`service "pilot" refers to undefined volume pilot-home`},
		{"misspelt variable", compose,
			"SPIKE_NEXUS_LISTEN: 0.0.0.0:8553", "SPIKE_NEXUS_LISTN: 0.0.0.0:8553",
			"service nexus sets SPIKE_NEXUS_LISTN, which spike-nexus does not read"},
		{"variable of another program", compose,
			keeperURLs, keeperURLs + "      SPIKE_KEEPER_KDF_TIME: \"3\"\n",
			"service nexus sets SPIKE_KEEPER_KDF_TIME, which spike-nexus does not read"},
		{"SPIKE variable on a non-SPIKE service", compose,
			"      TRUST_DOMAIN: spike.local\n", "      SPIKE_TRUST_DOMAIN: spike.local\n",
			"service register sets SPIKE_TRUST_DOMAIN but runs no SPIKE program"},
		{"unpinned image", compose,
			"${SPIKE_POSTGRES_IMAGE:-postgres:15.12@sha256:8f6fbd24a12304d2adc332a2162ee9ff9d6044045a0b07f94d6e53e73125e11c}", "${SPIKE_POSTGRES_IMAGE:-postgres:latest}",
			"service postgres: image postgres:latest is tagged latest: pin a version"},
		{"untagged image", compose,
			"${SPIKE_SPIRE_AGENT_IMAGE:-ghcr.io/spiffe/spire-agent:1.13.3@sha256:df9502625d910710f48b27eb861345ffeb3cd91c79a874f989f2150c391fd9f9}", "${SPIKE_SPIRE_AGENT_IMAGE:-ghcr.io/spiffe/spire-agent}",
			"image ghcr.io/spiffe/spire-agent has no tag"},
		{"published on all interfaces", compose,
			`"127.0.0.1:${SPIKE_NEXUS_HOST_PORT:-8553}:8553"`, `"${SPIKE_NEXUS_HOST_PORT:-8553}:8553"`,
			`service nexus publishes port 8553 on "": publish on 127.0.0.1 only`},
		{"published port nothing listens on", compose,
			`"127.0.0.1:${SPIKE_NEXUS_HOST_PORT:-8553}:8553"`, `"127.0.0.1:${SPIKE_NEXUS_HOST_PORT:-8553}:9999"`,
			"service nexus publishes container port 9999, where nothing listens"},
		{"keeper on loopback", compose,
			"SPIKE_KEEPER_LISTEN: 0.0.0.0:8443", "SPIKE_KEEPER_LISTEN: 127.0.0.1:8443",
			"service keeper: SPIKE_KEEPER_LISTEN=127.0.0.1:8443 listens on loopback only"},
		{"keeper URL on the wrong port", compose,
			"SPIKE_KEEPER_URLS: https://keeper:8443,", "SPIKE_KEEPER_URLS: https://keeper:8444,",
			"service nexus: SPIKE_KEEPER_URLS=https://keeper:8444, but keeper listens on 0.0.0.0:8443"},
		{"keeper missing from SPIKE_KEEPER_URLS", compose,
			keeperURLs, "      SPIKE_KEEPER_URLS: https://keeper:8443,https://keeper-2:8443\n",
			"service nexus: SPIKE_KEEPER_URLS does not list keeper-3, which runs spike-keeper"},
		{"keeper listed twice", compose,
			keeperURLs, "      SPIKE_KEEPER_URLS: https://keeper:8443,https://keeper-2:8443,https://keeper-2:8443/,https://keeper-3:8443\n",
			"service nexus: SPIKE_KEEPER_URLS names keeper-2 twice"},
		{"keeper URL naming a non-Keeper service", compose,
			keeperURLs, "      SPIKE_KEEPER_URLS: https://keeper:8443,https://keeper-2:8443,https://postgres:8443\n",
			"service nexus: SPIKE_KEEPER_URLS=https://postgres:8443 names service postgres, which does not run spike-keeper"},
		{"both keeper URL variables", compose,
			keeperURLs, keeperURLs + "      SPIKE_KEEPER_URL: https://keeper:8443\n",
			"service nexus sets both SPIKE_KEEPER_URL and SPIKE_KEEPER_URLS"},
		{"one keeper ID pinned with several keepers", compose,
			keeperURLs, keeperURLs + "      SPIKE_KEEPER_ID: spiffe://spike.local/spike/keeper/1\n",
			"service nexus sets SPIKE_KEEPER_ID=spiffe://spike.local/spike/keeper/1, one Keeper's ID, but SPIKE_KEEPER_URLS names several Keepers"},
		{"keeper other than the pinned one", compose,
			keeperURLs, keeperURLs + "      SPIKE_KEEPER_ID: spiffe://spike.local/spike/keeper/1\n",
			"service keeper-2 gets spiffe://spike.local/spike/keeper/2, but nexus expects spiffe://spike.local/spike/keeper/1 (SPIKE_KEEPER_ID)"},
		{"nexus waiting for a keeper's health", compose,
			"      keeper-3:\n        condition: service_started\n",
			"      keeper-3:\n        condition: service_healthy\n",
			"service nexus waits for keeper-3 to be healthy: one Keeper that never gets healthy would keep Nexus down"},
		{"nexus waiting for the start of its database", compose,
			"      postgres:\n        condition: service_healthy\n      db-roles:\n        condition: service_completed_successfully\n      migrate:",
			"      postgres:\n        condition: service_started\n      db-roles:\n        condition: service_completed_successfully\n      migrate:",
			"service nexus waits only for postgres to start: wait with condition service_healthy"},
		{"peer naming a non-Keeper service", compose,
			"SPIKE_KEEPER_PEERS: https://keeper:8443,https://keeper-3:8443", "SPIKE_KEEPER_PEERS: https://nexus:8553,https://keeper-3:8443",
			"service keeper-2: SPIKE_KEEPER_PEERS=https://nexus:8553 names service nexus, which does not run spike-keeper"},
		{"peer naming the keeper itself", compose,
			"SPIKE_KEEPER_PEERS: https://keeper:8443,https://keeper-3:8443", "SPIKE_KEEPER_PEERS: https://keeper-2:8443,https://keeper-3:8443",
			"service keeper-2: SPIKE_KEEPER_PEERS lists keeper-2 itself"},
		{"peer missing", compose,
			"SPIKE_KEEPER_PEERS: https://keeper:8443,https://keeper-2:8443", "SPIKE_KEEPER_PEERS: https://keeper:8443",
			"service keeper-3: SPIKE_KEEPER_PEERS does not list keeper-2: after a restart, keeper-3 could not take the root key from it"},
		{"peer on the wrong port", compose,
			"SPIKE_KEEPER_PEERS: https://keeper-2:8443,", "SPIKE_KEEPER_PEERS: https://keeper-2:8444,",
			"service keeper: SPIKE_KEEPER_PEERS=https://keeper-2:8444, but keeper-2 listens on 0.0.0.0:8443"},
		{"peer URL with a path", compose,
			"SPIKE_KEEPER_PEERS: https://keeper-2:8443,", "SPIKE_KEEPER_PEERS: https://keeper-2:8443/v1,",
			"service keeper: SPIKE_KEEPER_PEERS lists https://keeper-2:8443/v1, with a path, which Keeper refuses"},
		{"nexus URL naming the wrong service", compose,
			"      SPIKE_NEXUS_URL: https://nexus:8553\n    volumes:\n      - spire-agent-socket:/run/spire/agent/public:ro\n      - pilot-home",
			"      SPIKE_NEXUS_URL: https://keeper:8553\n    volumes:\n      - spire-agent-socket:/run/spire/agent/public:ro\n      - pilot-home",
			"service pilot: SPIKE_NEXUS_URL=https://keeper:8553 names service keeper, which does not run spike-nexus"},
		{"keeper URLs left to their default", compose,
			keeperURLs, "",
			"service nexus sets neither SPIKE_KEEPER_URLS nor SPIKE_KEEPER_URL: the default points at its own container"},
		{"database URL naming no database", compose,
			"postgres://spike_nexus@postgres:5432/", "postgres://spike_nexus@db:5432/",
			`service nexus: SPIKE_DATABASE_URL names host "db", which is no PostgreSQL service`},
		{"nexus not waiting for the migration", compose,
			"      migrate:\n        condition: service_completed_successfully\n", "",
			"service nexus does not wait for migrate to complete"},
		{"no migration", compose,
			`    command: ["migrate"]`, `    command: ["serve"]`,
			"the stack has 0 one-shots running `spike-nexus migrate`"},
		{"nexus serving as the owner", compose,
			"postgres://spike_nexus@postgres:5432/spike?sslmode=verify-full&sslrootcert=/run/spike/postgres-tls/ca.pem&passfile=/run/spike/nexus-db/pgpass",
			"postgres://spike@postgres:5432/spike?sslmode=verify-full&sslrootcert=/run/spike/postgres-tls/ca.pem&passfile=/run/spike/nexus-db/pgpass",
			"service nexus connects to the database as spike, the owner role migrate migrates as"},
		{"migration granting another role", compose,
			"SPIKE_DATABASE_ROLE: spike_nexus", "SPIKE_DATABASE_ROLE: nexus",
			"service migrate grants nexus (SPIKE_DATABASE_ROLE), but service nexus connects as spike_nexus"},
		{"owner's passfile in nexus", compose,
			"      - nexus-db-secret:/run/spike/nexus-db:ro\n      - postgres-tls:/run/spike/postgres-tls:ro\n    healthcheck:",
			"      - nexus-db-secret:/run/spike/nexus-db:ro\n      - postgres-tls:/run/spike/postgres-tls:ro\n      - postgres-secret:/run/spike/postgres:ro\n    healthcheck:",
			"service nexus mounts volume postgres-secret, which holds the owner's passfile"},
		{"nexus's passfile in migrate", compose,
			"      - postgres-secret:/run/spike/postgres:ro\n      - postgres-tls:/run/spike/postgres-tls:ro\n    depends_on:\n      db-roles:",
			"      - postgres-secret:/run/spike/postgres:ro\n      - postgres-tls:/run/spike/postgres-tls:ro\n      - nexus-db-secret:/run/spike/nexus-db:ro\n    depends_on:\n      db-roles:",
			"service migrate mounts volume nexus-db-secret, which holds Nexus's passfile"},
		{"password in the owner URL", compose,
			"postgres://spike@postgres:5432/spike?sslmode=verify-full&sslrootcert=/run/spike/postgres-tls/ca.pem&passfile=/run/spike/postgres/pgpass",
			"postgres://spike:hunter2@postgres:5432/spike?sslmode=verify-full&sslrootcert=/run/spike/postgres-tls/ca.pem",
			"service migrate: SPIKE_DATABASE_OWNER_URL holds a password"},
		{"owner URL naming no database", compose,
			"postgres://spike@postgres:5432/spike?sslmode=verify-full&sslrootcert=/run/spike/postgres-tls/ca.pem&passfile=/run/spike/postgres/pgpass",
			"postgres://spike@db:5432/spike?sslmode=verify-full&sslrootcert=/run/spike/postgres-tls/ca.pem&passfile=/run/spike/postgres/pgpass",
			`service migrate: SPIKE_DATABASE_OWNER_URL names host "db", which is no PostgreSQL service`},
		{"database without TLS", compose,
			"spike_nexus@postgres:5432/spike?sslmode=verify-full&", "spike_nexus@postgres:5432/spike?sslmode=require&",
			"service nexus: SPIKE_DATABASE_URL has sslmode=require: use sslmode=verify-full"},
		{"CA certificate not mounted", compose,
			"      - nexus-db-secret:/run/spike/nexus-db:ro\n      - postgres-tls:/run/spike/postgres-tls:ro\n    healthcheck:",
			"      - nexus-db-secret:/run/spike/nexus-db:ro\n    healthcheck:",
			"service nexus: SPIKE_DATABASE_URL names sslrootcert=/run/spike/postgres-tls/ca.pem, but no volume is mounted at /run/spike/postgres-tls"},
		{"server without TLS", compose,
			"      - ssl=on\n", "      - ssl=off\n",
			"service postgres does not run with ssl=on, but service migrate connects with sslmode=verify-full"},
		{"exposed port nothing listens on", compose,
			`expose: ["8443"]`, `expose: ["8443", "9000"]`,
			"service keeper exposes port 9000, where nothing listens"},
		{"unused volume", compose,
			"  pilot-home:\n", "  pilot-home:\n  leftover:\n",
			"volume leftover is declared but no service mounts it"},
		{"missing bind source", compose,
			"./spire/agent.conf:", "./spire/agent.hcl:",
			"service spire-agent bind-mounts deploy/compose/spire/agent.hcl, which does not exist"},
		{"unknown build target", compose,
			"    target: keeper\n", "    target: kepper\n",
			`service keeper: deploy/compose/Dockerfile has no stage "kepper"`},
		{"missing Dockerfile", compose,
			"  dockerfile: deploy/compose/Dockerfile\n", "  dockerfile: deploy/compose/Containerfile\n",
			"Dockerfile deploy/compose/Containerfile does not exist"},
		{"uid not registered", compose,
			"      - spike/nexus=10002\n", "      - spike/nexus=10009\n",
			"service nexus runs as uid 10002, which service register does not register"},
		{"two services, one uid", compose,
			"      target: workload\n", "      target: workload\n    user: \"10003:10003\"\n",
			"services demo and pilot both run as uid 10003"},
		{"two keepers, one ID", compose,
			"      - spike/keeper/3=10013\n", "      - spike/keeper/2=10013\n",
			"services keeper-2 and keeper-3 both get spiffe://spike.local/spike/keeper/2: each Keeper needs an ID of its own"},
		{"keeper registered under a non-Keeper ID", compose,
			"      - spike/keeper/2=10012\n", "      - spike/keeper-2=10012\n",
			"service keeper-2 gets spiffe://spike.local/spike/keeper-2, but nexus takes only a Keeper ID, spiffe://spike.local/spike/keeper/<name> (SPIKE_KEEPER_ID unset)"},
		{"keeper registered under an ID its peers refuse", compose,
			"      - spike/keeper/2=10012\n", "      - spike/keeper/2/a=10012\n",
			"service keeper-2 gets spiffe://spike.local/spike/keeper/2/a, but its peers take only a Keeper ID"},
		{"pilot not an admin", compose,
			"      - spike/pilot=10003\n", "      - app/pilot=10003\n",
			"service pilot gets spiffe://spike.local/app/pilot, which nexus does not take as an admin"},
		{"workload with a SPIKE ID", compose,
			"      - app/demo=10100\n", "      - spike/demo=10100\n",
			"service demo, a workload, gets spiffe://spike.local/spike/demo"},
		{"agent registered under a SPIKE ID", compose,
			"      - app/agent=10101\n", "      - spike/agent=10101\n",
			"service agent, a workload, gets spiffe://spike.local/spike/agent"},
		{"agent outside a profile", compose,
			"    profiles: [agent]\n    command: [\"agent\"", "    command: [\"agent\"",
			"agent service agent: not in a profile"},
		{"agent health check without --check", compose,
			`"/etc/spike/agent/agent.yaml", "--check"]`, `"/etc/spike/agent/agent.yaml"]`,
			"agent service agent: its health check is not `spike agent --config /etc/spike/agent/agent.yaml --check`"},
		{"agent configuration writable", compose,
			"      - ./agent:/etc/spike/agent:ro\n", "      - ./agent:/etc/spike/agent\n",
			"agent service agent: /etc/spike/agent is bind-mounted read-write"},
		{"agent renders outside its volume", "agent/agent.yaml",
			"destination: /run/secrets/app/demo.env", "destination: /tmp/demo.env",
			"agent service agent: renders /tmp/demo.env outside a named volume it mounts read-write"},
		{"agent template missing", "agent/agent.yaml",
			"source: demo.tmpl", "source: db.tmpl",
			"agent service agent: template source: /etc/spike/agent/db.tmpl (from deploy/compose/agent/db.tmpl)"},
		{"rendered file readable by others", "agent/agent.yaml",
			`mode: "0640"`, `mode: "0644"`,
			"template /run/secrets/app/demo.env: mode 0644: a rendered secret is never readable by others"},
		{"app writes the agent's volume", compose,
			"      - app-secrets:/run/secrets/app:ro\n", "      - app-secrets:/run/secrets/app/\n",
			"service app mounts app-secrets (where the agent renders /run/secrets/app/demo.env) read-write"},
		{"no app beside the agent", compose,
			"      - app-secrets:/run/secrets/app:ro\n", "      - pilot-home:/run/secrets/app:ro\n",
			"no other service mounts app-secrets, where it renders /run/secrets/app/demo.env: the sidecar serves no app"},
		{"two trust domains", compose,
			"      TRUST_DOMAIN: spike.local\n", "      TRUST_DOMAIN: example.org\n",
			`more than one trust domain: "example.org" in service register (TRUST_DOMAIN)`},
		{"socket volume not mounted", compose,
			"      - spire-agent-socket:/run/spire/agent/public:ro\n      - nexus-db-secret:/run/spike/nexus-db:ro\n",
			"      - nexus-db-secret:/run/spike/nexus-db:ro\n",
			"service nexus: SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/agent/public/api.sock, but it does not mount the agent's socket volume"},
		{"long-running service as root", compose,
			`    user: "10012:10012"`, `    user: "0:0"`,
			"service keeper-2 runs as root"},
		{"pilot outside a profile", compose,
			"    profiles: [tools]\n    restart: \"no\"\n    read_only: true\n    cap_drop: [ALL]\n    security_opt: [\"no-new-privileges:true\"]\n    environment:\n      SPIKE_TRUST_DOMAIN: spike.local\n      SPIFFE_ENDPOINT_SOCKET: unix:///run/spire/agent/public/api.sock\n      SPIKE_NEXUS_URL: https://nexus:8553\n    volumes:\n      - spire-agent-socket:/run/spire/agent/public:ro\n      - pilot-home",
			"    restart: \"no\"\n    read_only: true\n    cap_drop: [ALL]\n    security_opt: [\"no-new-privileges:true\"]\n    environment:\n      SPIKE_TRUST_DOMAIN: spike.local\n      SPIFFE_ENDPOINT_SOCKET: unix:///run/spire/agent/public/api.sock\n      SPIKE_NEXUS_URL: https://nexus:8553\n    volumes:\n      - spire-agent-socket:/run/spire/agent/public:ro\n      - pilot-home",
			"the stack has no Pilot (spike) in a profile"},
		{"COPY of a missing file", dockerfile,
			"COPY proto proto\n", "COPY proto proto\nCOPY no-such-dir no-such-dir\n",
			"deploy/compose/Dockerfile:33: COPY source no-such-dir does not exist in the build context (the repository root)"},
		{"COPY of an ignored directory", dockerfile,
			"COPY proto proto\n", "COPY proto proto\nCOPY tools tools\n",
			"COPY source tools is left out of the build context by deploy/compose/Dockerfile.dockerignore"},
		{"workspace module not copied", dockerfile,
			"COPY proto proto\n", "",
			"stage builder copies go.work, which uses ./proto, but does not copy proto"},
		{"unpinned base image", dockerfile,
			"FROM golang:1.26.8@sha256:3c3e25a4da13fd0478eed2df1eb35a0e667094a7124d3993a6a1d30f71c17e79 AS builder", "FROM golang AS builder",
			"deploy/compose/Dockerfile:24: FROM golang has no tag, which means latest: pin a version"},
		{"unpinned COPY --from image", dockerfile,
			"COPY --from=spire-server /opt", "COPY --from=ghcr.io/spiffe/spire-server:latest /opt",
			"COPY --from=ghcr.io/spiffe/spire-server:latest is tagged latest"},
		{"image running as root", dockerfile,
			"USER 10002:10002\n", "",
			"service nexus: its image (stage nexus of deploy/compose/Dockerfile) runs as root"},
		{"entrypoint of another program", dockerfile,
			`ENTRYPOINT ["/usr/local/bin/spike-nexus"]`, `ENTRYPOINT ["/usr/local/bin/spike-keeper"]`,
			"service nexus sets SPIKE_NEXUS_LISTEN, which spike-keeper does not read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, dir := paths(t)
			data, err := os.ReadFile(filepath.Join(dir, tt.file))
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

// TestProgramSources guards the tables of programs.go against the code
// drifting away from them: the files exist, name the variables the checks
// rely on, and hold the default listen addresses assumed here.
func TestProgramSources(t *testing.T) {
	t.Parallel()
	root, _ := paths(t)
	for name := range programSources {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p, err := loadProgram(root, name)
			if err != nil {
				t.Fatal(err)
			}
			// Every program's SVID settings, and what checkKeepers and
			// checkExpectedIDs read of Keeper and Nexus.
			vars := []string{"SPIKE_TRUST_DOMAIN", "SPIFFE_ENDPOINT_SOCKET", "SPIKE_SVID_CERT"}
			switch name {
			case "spike-keeper":
				vars = append(vars, "SPIKE_KEEPER_PEERS", "SPIKE_KEEPER_NEXUS_ID")
			case "spike-nexus":
				vars = append(vars, "SPIKE_KEEPER_URLS", "SPIKE_KEEPER_URL", "SPIKE_KEEPER_ID", "SPIKE_ADMIN_IDS")
			}
			for _, v := range vars {
				if !p.env[v] {
					t.Errorf("%s: %s not found among the variables read: %v", name, v, sortedKeys(p.env))
				}
			}
			srv, ok := servers[name]
			if !ok {
				return
			}
			for _, v := range []string{srv.listenVar, srv.opsVar} {
				if !p.env[v] {
					t.Errorf("%s does not read %s", name, v)
				}
			}
			for _, def := range []string{srv.listenDefault, srv.opsDefault} {
				if !p.literals[def] {
					t.Errorf("%s: default %q not found in %v: update servers in programs.go", name, def, programSources[name])
				}
			}
		})
	}
}
