package check

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// dbConn is what a workload is given to reach PostgreSQL.
type dbConn struct {
	url *url.URL
	// passwordSecret is the Secret PGPASSWORD comes from.
	passwordSecret string
	// caSecret is the Secret sslrootcert is read from.
	caSecret string
}

// connection reads a container's database URL variable and password.
func connection(w workload, urlVar string) (dbConn, []string) {
	var out []string
	c := w.container()
	if c == nil {
		return dbConn{}, nil
	}
	v, _ := env(c, urlVar)
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "postgres" && u.Scheme != "postgresql" || u.User == nil || u.Host == "" {
		return dbConn{}, []string{fmt.Sprintf("%s: %s=%q is not a postgres:// URL with a user", w, urlVar, v)}
	}
	if _, has := u.User.Password(); has {
		out = append(out, fmt.Sprintf("%s: %s holds a password in the clear", w, urlVar))
	}
	q := u.Query()
	if q.Get("sslmode") != "verify-full" {
		out = append(out, fmt.Sprintf("%s: %s has sslmode=%q, want verify-full", w, urlVar, q.Get("sslmode")))
	}
	conn := dbConn{url: u, caSecret: secretMountedAt(w, q.Get("sslrootcert"))}
	if conn.caSecret == "" {
		out = append(out, fmt.Sprintf("%s: %s's sslrootcert %q is not a file of a mounted Secret", w, urlVar, q.Get("sslrootcert")))
	}
	pw := envVar(c, "PGPASSWORD")
	if pw == nil || pw.ValueFrom == nil || pw.ValueFrom.SecretKeyRef == nil {
		out = append(out, fmt.Sprintf("%s: PGPASSWORD does not come from a Secret", w))
	} else {
		conn.passwordSecret = pw.ValueFrom.SecretKeyRef.Name
	}
	return conn, out
}

// secretMountedAt returns the Secret w mounts in the directory of file,
// or "".
func secretMountedAt(w workload, file string) string {
	c := w.container()
	if c == nil || file == "" {
		return ""
	}
	for _, m := range c.VolumeMounts {
		if path.Dir(file) != path.Clean(m.MountPath) {
			continue
		}
		for _, v := range w.pod.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				return v.Secret.SecretName
			}
		}
	}
	return ""
}

// secretsOf lists every Secret a pod template refers to.
func secretsOf(pod *corev1.PodTemplateSpec) []string {
	var out []string
	for _, c := range pod.Spec.Containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				out = append(out, e.ValueFrom.SecretKeyRef.Name)
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				out = append(out, e.SecretRef.Name)
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			out = append(out, v.Secret.SecretName)
		}
	}
	return out
}

// checkDatabase wants Nexus to connect as its serving role with that
// role's Secret, the migration Job (a Helm hook before every upgrade) to
// connect to the same database as the owner with the owner's Secret and
// to grant the serving role, neither to see the other's Secret, TLS with
// verify-full for both, and a CloudNativePG cluster, when the chart makes
// one, to replicate synchronously and manage both roles from those Secrets.
func checkDatabase(o *Objects, want Want) []string {
	nexus, jobs := byComponent(o.workloads(), "nexus"), byComponent(o.workloads(), "migrate")
	if len(nexus) != 1 || len(jobs) != 1 || nexus[0].container() == nil || jobs[0].container() == nil {
		return []string{"want one Nexus and one migration Job"}
	}
	n, j := nexus[0], jobs[0]
	serving, out := connection(n, "SPIKE_DATABASE_URL")
	owner, more := connection(j, "SPIKE_DATABASE_OWNER_URL")
	out = append(out, more...)
	if serving.url == nil || owner.url == nil {
		return out
	}
	servingRole, ownerRole := serving.url.User.Username(), owner.url.User.Username()
	if servingRole == ownerRole {
		out = append(out, fmt.Sprintf("Nexus serves as %q, the schema's owner", servingRole))
	}
	if serving.url.Host != owner.url.Host || serving.url.Path != owner.url.Path {
		out = append(out, fmt.Sprintf("Nexus uses %s%s but the migration %s%s", serving.url.Host, serving.url.Path, owner.url.Host, owner.url.Path))
	}
	if role, _ := env(j.container(), "SPIKE_DATABASE_ROLE"); role != servingRole {
		out = append(out, fmt.Sprintf("the migration grants SPIKE_DATABASE_ROLE=%q, but Nexus serves as %q", role, servingRole))
	}
	if serving.passwordSecret == owner.passwordSecret {
		out = append(out, fmt.Sprintf("Nexus and the migration take their password from the same Secret %q", owner.passwordSecret))
	}
	if slices.Contains(secretsOf(n.pod), owner.passwordSecret) {
		out = append(out, fmt.Sprintf("Nexus refers to the owner's Secret %q", owner.passwordSecret))
	}
	if slices.Contains(secretsOf(j.pod), serving.passwordSecret) {
		out = append(out, fmt.Sprintf("the migration refers to Nexus's Secret %q", serving.passwordSecret))
	}
	if v, ok := env(n.container(), "SPIKE_DEV_ALLOW_PRIVILEGED_DB_ROLE"); ok && v != "false" {
		out = append(out, "Nexus sets SPIKE_DEV_ALLOW_PRIVILEGED_DB_ROLE: development only")
	}
	if args := j.container().Args; !slices.Equal(args, []string{"migrate"}) || len(j.container().Command) > 0 {
		out = append(out, fmt.Sprintf("the migration Job runs %v %v, want the image's spike-nexus with [migrate]", j.container().Command, args))
	}

	hooks := strings.Split(o.Jobs[0].Annotations["helm.sh/hook"], ",")
	firstHook := "pre-install"
	if len(o.PostgresClusters) > 0 {
		firstHook = "post-install" // the chart creates the database: it must exist first
	}
	if !slices.Contains(hooks, "pre-upgrade") || !slices.Contains(hooks, firstHook) {
		out = append(out, fmt.Sprintf("the migration Job's helm.sh/hook is %v, want pre-upgrade and %s", hooks, firstHook))
	}
	for _, c := range o.PostgresClusters {
		out = append(out, checkPostgresCluster(c, want, serving, owner)...)
	}
	return out
}

// checkPostgresCluster checks a CloudNativePG cluster the chart creates.
func checkPostgresCluster(c *PostgresCluster, want Want, serving, owner dbConn) []string {
	var out []string
	s := c.Spec
	if sync := s.PostgresConfiguration.Synchronous; sync == nil || sync.Number < 1 || sync.Number >= s.Instances || sync.DataDurability != "required" {
		out = append(out, fmt.Sprintf("Cluster %s: want synchronous replication to at least one of its other instances, with dataDurability required", c.Name))
	}
	if s.EnableSuperuserAccess == nil || *s.EnableSuperuserAccess {
		out = append(out, fmt.Sprintf("Cluster %s: superuser access is not turned off", c.Name))
	}
	if ca := c.Name + "-ca"; serving.caSecret != ca || owner.caSecret != ca {
		out = append(out, fmt.Sprintf("Nexus and the migration verify the server with the CA of Secrets %q and %q, not the Cluster's %q", serving.caSecret, owner.caSecret, ca))
	}
	host := fmt.Sprintf("%s-rw.%s.svc:5432", c.Name, want.Release.Namespace)
	if serving.url.Host != host {
		out = append(out, fmt.Sprintf("Nexus connects to %s, not the Cluster's primary %s", serving.url.Host, host))
	}
	if db := strings.TrimPrefix(serving.url.Path, "/"); s.Bootstrap == nil || s.Bootstrap.InitDB == nil ||
		s.Bootstrap.InitDB.Database != db || s.Bootstrap.InitDB.Owner != owner.url.User.Username() ||
		s.Bootstrap.InitDB.Secret == nil || s.Bootstrap.InitDB.Secret.Name != owner.passwordSecret {
		out = append(out, fmt.Sprintf("Cluster %s: initdb does not create database %q owned by %q with the password of Secret %q", c.Name, db, owner.url.User.Username(), owner.passwordSecret))
	}
	found := false
	for _, r := range managedRoles(s) {
		if r.Name != serving.url.User.Username() {
			continue
		}
		found = true
		if !r.Login || r.PasswordSecret == nil || r.PasswordSecret.Name != serving.passwordSecret {
			out = append(out, fmt.Sprintf("Cluster %s: role %s cannot log in with the password of Secret %q", c.Name, r.Name, serving.passwordSecret))
		}
		if r.Superuser || r.CreateDB || r.CreateRole || r.Replication || r.BypassRLS {
			out = append(out, fmt.Sprintf("Cluster %s: Nexus's role %s has a privilege it must not have", c.Name, r.Name))
		}
	}
	if !found {
		out = append(out, fmt.Sprintf("Cluster %s does not manage Nexus's role %q", c.Name, serving.url.User.Username()))
	}
	return out
}

// managedRoles returns a cluster's managed roles.
func managedRoles(s PostgresClusterSpec) []RoleConfiguration {
	if s.Managed == nil {
		return nil
	}
	return s.Managed.Roles
}
