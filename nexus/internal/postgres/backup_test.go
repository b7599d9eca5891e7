package postgres

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// backupRows are rows of every loaded table, as a backup carries them
// (values in BackupTables column order, as backup.SQL gives them).
func backupRows() map[string][][]any {
	at := time.Date(2026, 12, 3, 1, 2, 3, 456789000, time.UTC)
	dek := bytes.Repeat([]byte{1}, 16)
	return map[string][][]any{
		"audit_checkpoints": {{[]byte("chain"), int64(0), int64(7), []byte("last"), []byte("mac"), at}},
		"root_keyrings":     {{int64(1), []byte("kr"), []byte{}, []byte{}, at, []byte("sealed"), int64(3)}},
		"data_keys":         {{dek, int64(2), []byte("wrapped"), at, nil}},
		"audit_keys":        {{int64(1), dek, at}},
		"secrets": {{"apps/db", int64(2), at, at, int64(1), int64(0), false, nil,
			bytes.Repeat([]byte{2}, 16), []byte("head")}},
		"secret_versions": {
			{"apps/db", int64(1), dek, nil, "spiffe://spike.local/a", at, at, at},
			{"apps/db", int64(2), dek, []byte("v2"), "spiffe://spike.local/a", at, nil, nil},
		},
		"policies":          {{"web", []byte("sealed policy"), at, at}},
		"policy_generation": {{int64(1), int64(5)}},
		"policy_manifest":   {{int64(1), []byte("manifest"), at}},
		"audit_log": {{int64(42), []byte("chain"), int64(0), int64(8), at, "req", "caller", "peer", "proc", "target",
			"allow", "reason", "ok", int64(12), []byte("mac")}},
		"audit_settings": {{int64(1), "02:00:00"}},
	}
}

// A restore runs as the serving role: it loads every table (checkpoints
// through restore_audit_checkpoint), commits with its audit record, and a
// snapshot then reads back what was loaded. A second restore is refused,
// naming what the database holds, and the checkpoint function refuses an
// initialised database.
func TestRestoreAsServingRole(t *testing.T) {
	t.Parallel()
	_, serving, _ := servingStores(t)
	ctx := t.Context()
	r, err := serving.BeginRestore(ctx, auditRec(t, serving))
	if err != nil {
		t.Fatal(err)
	}
	rows := backupRows()
	for _, tb := range BackupTables() {
		if err := r.Load(ctx, tb, rows[tb.Name]); err != nil {
			t.Fatalf("load %s: %v", tb.Name, err)
		}
	}
	if note := r.Note(); !strings.Contains(note, "min_prune_age was 02:00:00") {
		t.Errorf("note = %q, want the audit settings named", note)
	}
	if err := r.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	err = serving.Snapshot(ctx, func(sn *Snapshot) error {
		info, err := sn.Info(ctx)
		if err != nil {
			return err
		}
		if string(info.KeyringID) != "kr" || info.Epoch != 3 || info.AuditKey.RootKeyVersion != 2 || string(info.AuditKey.Wrapped) != "wrapped" {
			t.Errorf("info = %+v", info)
		}
		for _, tb := range BackupTables() {
			var got [][]any
			if err := sn.Scan(ctx, tb, func(v []any) error { got = append(got, normal(v)); return nil }); err != nil {
				return err
			}
			want := rows[tb.Name]
			switch tb.Name {
			case "audit_log":
				// The restore's own record follows; ids are new.
				if len(got) != 2 || !cmp.Equal(got[0][1:], normal(want[0])[1:]) {
					t.Errorf("audit_log = %v, want %v then the restore's record", got, want)
				}
				continue
			case "audit_settings":
				want = [][]any{{int64(1), "01:00:00"}} // the target's stays
			}
			for i := range want {
				want[i] = normal(want[i])
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tb.Name, diff)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	_, err = serving.BeginRestore(ctx, auditRec(t, serving))
	if fault.CodeOf(err) != fault.FailedPrecondition || !strings.Contains(err.Error(), "not empty: it holds a root keyring (1), data keys (1)") {
		t.Errorf("second restore: %v", err)
	}
	_, err = serving.pool.Exec(ctx, "SELECT restore_audit_checkpoint('x', 0::smallint, 1, 'l', 'm', now())")
	wantSQLState(t, "restore_audit_checkpoint on an initialised database", err, "55000")
	_, err = serving.pool.Exec(ctx, "INSERT INTO audit_checkpoints (chain_id, lane, seq, last_mac, mac) VALUES ('y', 0, 1, 'l', 'm')")
	wantSQLState(t, "insert a checkpoint as the serving role", err, "42501")
}

// Rows that do not fit the schema are refused as a damaged backup, and a
// refused restore leaves nothing behind.
func TestRestoreRefusesMisfits(t *testing.T) {
	t.Parallel()
	_, serving, _ := servingStores(t)
	ctx := t.Context()
	r, err := serving.BeginRestore(ctx, auditRec(t, serving))
	if err != nil {
		t.Fatal(err)
	}
	var secrets BackupTable
	for _, tb := range BackupTables() {
		if tb.Name == "secrets" {
			secrets = tb
		}
	}
	bad := backupRows()["secrets"]
	bad[0][1] = int64(-1) // current_version must be >= 0
	err = r.Load(ctx, secrets, bad)
	if fault.CodeOf(err) != fault.DataLoss || !strings.Contains(err.Error(), "rows of secrets do not fit the schema") {
		t.Errorf("load of a misfit row: %v", err)
	}
	r.Rollback(ctx)
	if ok, err := serving.Initialized(ctx); err != nil || ok {
		t.Errorf("after a refused restore: initialised %v, %v", ok, err)
	}
	var n int
	if err := serving.pool.QueryRow(ctx, "SELECT count(*) FROM secrets").Scan(&n); err != nil || n != 0 {
		t.Errorf("secrets after a refused restore: %d, %v", n, err)
	}
}

// normal makes scanned values comparable with loaded ones: every integer
// an int64, times in UTC.
func normal(v []any) []any {
	out := make([]any, len(v))
	for i, x := range v {
		switch y := x.(type) {
		case int16:
			out[i] = int64(y)
		case int32:
			out[i] = int64(y)
		case time.Time:
			out[i] = y.UTC()
		default:
			out[i] = x
		}
	}
	return out
}
