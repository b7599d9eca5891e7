package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// pgStats reads what PostgreSQL itself counted during a cell: statements
// from pg_stat_statements (updated as each statement ends, so exact at a
// cell's edges) and WAL from the insert position (exact too; pg_stat_wal
// is flushed by backends only every second or so). It needs a superuser
// connection (the bench's Unix socket) and the extension loaded.
type pgStats struct {
	conn *pgx.Conn
	// db is the database whose statements count: SPIKE's.
	db string
}

// openPGStats connects to url, checks that pg_stat_statements is usable
// and returns a reader of SPIKE's statements in database db.
func openPGStats(ctx context.Context, url, db string) (*pgStats, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("-pg-stats-url: %w", err)
	}
	p := &pgStats{conn: conn, db: db}
	if _, err := p.take(ctx); err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("-pg-stats-url: pg_stat_statements is not usable (shared_preload_libraries, CREATE EXTENSION): %w", err)
	}
	return p, nil
}

func (p *pgStats) close(ctx context.Context) error { return p.conn.Close(ctx) }

// pgSnap is PostgreSQL's counters at one moment.
type pgSnap struct {
	walLSN uint64
	// stmts are pg_stat_statements' rows of SPIKE's database by query id.
	stmts map[int64]pgStatement
}

// pgStatement is one normalised statement's counters (or their change
// over a cell).
type pgStatement struct {
	Query string
	Calls float64
	// ExecMS is the time spent executing, wall clock, in milliseconds.
	ExecMS   float64
	WALBytes float64
	Rows     float64
}

// take reads the counters. The statements it runs itself are in another
// database (the connection's), so they do not count.
func (p *pgStats) take(ctx context.Context) (pgSnap, error) {
	s := pgSnap{stmts: map[int64]pgStatement{}}
	var lsn string
	if err := p.conn.QueryRow(ctx, `SELECT (pg_current_wal_insert_lsn() - '0/0')::text`).Scan(&lsn); err != nil {
		return s, err
	}
	v, err := strconv.ParseFloat(lsn, 64)
	if err != nil {
		return s, fmt.Errorf("WAL position %q: %w", lsn, err)
	}
	s.walLSN = uint64(v)
	rows, err := p.conn.Query(ctx,
		`SELECT queryid, calls, total_exec_time, wal_bytes::float8, rows, regexp_replace(query, '\s+', ' ', 'g')
		 FROM pg_stat_statements
		 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) AND queryid IS NOT NULL`, p.db)
	if err != nil {
		return s, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id int64
			st pgStatement
		)
		if err := rows.Scan(&id, &st.Calls, &st.ExecMS, &st.WALBytes, &st.Rows, &st.Query); err != nil {
			return s, err
		}
		s.stmts[id] = st
	}
	return s, rows.Err()
}

// pgUsage is what PostgreSQL did during one cell; Measured is false when
// nothing was read.
type pgUsage struct {
	Measured bool
	// Statements counts the statements pg_stat_statements saw in SPIKE's
	// database (it does not count BEGIN and COMMIT), WALBytes the WAL the
	// whole cluster wrote.
	Statements, WALBytes float64
	// Top are the statements that ran, most calls first.
	Top []pgStatement
}

// pgBetween is the change from a to b.
func pgBetween(a, b pgSnap) pgUsage {
	if a.stmts == nil || b.stmts == nil {
		return pgUsage{}
	}
	u := pgUsage{Measured: true, WALBytes: float64(b.walLSN - a.walLSN)}
	for id, sb := range b.stmts {
		sa := a.stmts[id] // zero when new
		d := pgStatement{Query: sb.Query, Calls: sb.Calls - sa.Calls, ExecMS: sb.ExecMS - sa.ExecMS,
			WALBytes: sb.WALBytes - sa.WALBytes, Rows: sb.Rows - sa.Rows}
		if d.Calls <= 0 {
			continue
		}
		u.Statements += d.Calls
		u.Top = append(u.Top, d)
	}
	slices.SortFunc(u.Top, func(x, y pgStatement) int {
		if c := cmp.Compare(y.Calls, x.Calls); c != 0 {
			return c
		}
		return strings.Compare(x.Query, y.Query)
	})
	return u
}

// pgPerOpTable is statements and WAL per request for every cell that was
// measured with PostgreSQL's counters; nil when none was.
func (r report) pgPerOpTable() [][]string {
	t := [][]string{{"cell", "statements/op", "WAL bytes/op"}}
	for i, row := range r.Rows {
		for _, c := range []struct {
			name string
			s    summary
			u    usage
		}{
			{"SPIKE " + row.Op + protoSuffix(row.Proto), row.SPIKE, row.SPIKEUse},
			{"raw " + row.Ref, row.Raw, row.RawUse},
		} {
			if strings.HasPrefix(c.name, "raw ") && sameRaw(r.Rows, i) {
				continue
			}
			if !c.u.PG.Measured || !c.s.valid() || c.s.Ops == 0 {
				continue
			}
			n := float64(c.s.Ops)
			t = append(t, []string{fmt.Sprintf("%s c=%d", c.name, row.Concurrency),
				strconv.FormatFloat(c.u.PG.Statements/n, 'f', 2, 64),
				strconv.FormatFloat(math.Round(c.u.PG.WALBytes/n), 'f', 0, 64)})
		}
	}
	if len(t) == 1 {
		return nil
	}
	return t
}

// pgStatementTable breaks one cell down by statement: calls per request,
// mean execution time (wall clock inside PostgreSQL, waits included), WAL
// per call and the statement's text, shortened.
func pgStatementTable(s summary, u pgUsage) [][]string {
	if !u.Measured || s.Ops == 0 {
		return nil
	}
	n := float64(s.Ops)
	t := [][]string{{"calls/op", "mean µs", "WAL bytes/call", "statement"}}
	for _, st := range u.Top {
		if st.Calls/n < 0.01 {
			continue // background work, not the request's
		}
		t = append(t, []string{
			strconv.FormatFloat(st.Calls/n, 'f', 2, 64),
			strconv.FormatFloat(st.ExecMS*1000/st.Calls, 'f', 0, 64),
			strconv.FormatFloat(st.WALBytes/st.Calls, 'f', 0, 64),
			"`" + shorten(st.Query, 90) + "`",
		})
	}
	return t
}

// shorten cuts s to at most n runes, marking the cut.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// pgSections are the report's sections about PostgreSQL's own counters:
// none when they were not read.
func (r report) pgSections() []section {
	per := r.pgPerOpTable()
	if per == nil {
		return nil
	}
	secs := []section{{
		title: "PostgreSQL per request",
		before: []string{"From PostgreSQL's own counters, read at each cell's edges: statements run in " +
			"SPIKE's database per successful request (`pg_stat_statements`, which does not count BEGIN and COMMIT; " +
			"Nexus's background work such as its change-log poll is in it too) and WAL written by the " +
			"whole cluster per request (the WAL insert position)."},
		table: per,
	}}
	for _, op := range []string{"get", "put"} {
		row, ok := r.row(op, pgBreakdownConcurrency, protoH2)
		if !ok {
			continue
		}
		if t := pgStatementTable(row.SPIKE, row.SPIKEUse.PG); len(t) > 1 {
			secs = append(secs, section{
				title: fmt.Sprintf("Statements of a %s (c=%d, %s)", op, pgBreakdownConcurrency, protoName(row.Proto)),
				before: []string{"Each statement's calls per request, its mean time inside PostgreSQL (wall " +
					"clock: lock and CPU waits included) and its WAL; statements run less than once per " +
					"hundred requests are left out."},
				table: t,
			})
		}
	}
	return secs
}

// pgBreakdownConcurrency is the concurrency whose cells are broken down by
// statement.
const pgBreakdownConcurrency = 16
