package main

import (
	"strings"
	"testing"
	"time"
)

func TestPGBetween(t *testing.T) {
	a := pgSnap{walLSN: 1000, stmts: map[int64]pgStatement{
		1: {Query: "SELECT a", Calls: 10, ExecMS: 1, WALBytes: 0},
		2: {Query: "INSERT b", Calls: 5, ExecMS: 2, WALBytes: 500},
		3: {Query: "idle", Calls: 7},
	}}
	b := pgSnap{walLSN: 5000, stmts: map[int64]pgStatement{
		1: {Query: "SELECT a", Calls: 110, ExecMS: 11, WALBytes: 0},
		2: {Query: "INSERT b", Calls: 55, ExecMS: 7, WALBytes: 3000},
		3: {Query: "idle", Calls: 7},
		4: {Query: "COMMIT", Calls: 100},
	}}
	u := pgBetween(a, b)
	if !u.Measured || u.WALBytes != 4000 || u.Statements != 250 {
		t.Fatalf("pgBetween = %+v, want measured, 4000 WAL bytes, 250 statements", u)
	}
	var order []string
	for _, s := range u.Top {
		order = append(order, s.Query)
	}
	if got := strings.Join(order, ","); got != "COMMIT,SELECT a,INSERT b" {
		t.Errorf("statements by calls, ties by text: %s (the idle one must be left out)", got)
	}
	if u.Top[2].WALBytes != 2500 || u.Top[2].ExecMS != 5 {
		t.Errorf("INSERT b changed by %+v, want 2500 WAL bytes and 5 ms", u.Top[2])
	}
	if got := pgBetween(pgSnap{}, b); got.Measured {
		t.Errorf("a missing snapshot gave %+v, want nothing measured", got)
	}
}

func TestPGTables(t *testing.T) {
	s := summary{Ops: 100, Elapsed: time.Second}
	u := pgUsage{Measured: true, Statements: 350, WALBytes: 150000, Top: []pgStatement{
		{Query: "SELECT head FROM secrets WHERE path = $1", Calls: 100, ExecMS: 5},
		{Query: "INSERT INTO audit_log " + strings.Repeat("x", 200), Calls: 25, ExecMS: 10, WALBytes: 50000},
		{Query: "rare", Calls: 0.5},
	}}
	r := report{Rows: []row{{Op: "put", Ref: "INSERT", Concurrency: 16, Proto: protoH2, SPIKE: s, SPIKEUse: usage{PG: u},
		Raw: s, RawUse: usage{}}}}
	per := r.pgPerOpTable()
	if len(per) != 2 || per[1][0] != "SPIKE put c=16" || per[1][1] != "3.50" || per[1][2] != "1500" {
		t.Errorf("per-request table %q, want one SPIKE row with 3.50 statements and 1500 WAL bytes (raw unmeasured: left out)", per)
	}
	st := pgStatementTable(s, u)
	if len(st) != 3 {
		t.Fatalf("statement table %q: want a header and two rows (the rare statement left out)", st)
	}
	if st[1][0] != "1.00" || st[1][1] != "50" || st[2][0] != "0.25" || st[2][1] != "400" || st[2][2] != "2000" {
		t.Errorf("statement rows %q", st[1:])
	}
	if q := st[2][3]; len([]rune(q)) > 92 || !strings.HasSuffix(q, "…`") {
		t.Errorf("long statement not shortened: %q", q)
	}
	if secs := r.pgSections(); len(secs) != 2 || !strings.HasPrefix(secs[1].title, "Statements of a put") {
		t.Errorf("sections %v, want the per-request table and the put's statements", secs)
	}
	if (report{Rows: []row{{Op: "get", SPIKE: s}}}).pgSections() != nil {
		t.Error("a report without PostgreSQL counters has PostgreSQL sections")
	}
}
