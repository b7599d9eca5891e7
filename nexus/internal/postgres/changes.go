package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spike-dev/spike/nexus/internal/secret"
)

// Position is a place in the change log: every row up to it, in (XID, ID)
// order, was read; the rows after it were not. {XID: x} (ID 0) is the
// place before every row of transaction x.
type Position struct {
	XID uint64
	ID  int64
}

// Before reports whether p comes before q.
func (p Position) Before(q Position) bool {
	return p.XID < q.XID || p.XID == q.XID && p.ID < q.ID
}

// ChangeRow is one row of the change log, as stored: plain, not
// authenticated (callers check it against the secret's sealed head).
type ChangeRow struct {
	Position
	Path     string
	Kind     secret.ChangeKind
	Versions []int64
	// MAC authenticates the row (see audit.Trail.CheckChange).
	MAC []byte
	At  time.Time
}

// ChangeLog is the change log's state.
type ChangeLog struct {
	// Identity is this database's change-log identity.
	Identity string
	// Pruned is the highest transaction id whose rows were pruned: a
	// position before {Pruned+1} may have lost rows.
	Pruned uint64
	// Settled is the xmin of a current snapshot: every transaction before
	// it has ended, every later one has an id of at least Settled.
	Settled uint64
	// Next is the id the next transaction will get: no position beyond it
	// can come from this database.
	Next uint64
	// InFlight are the ids, ascending, of the transactions the snapshot
	// saw running: every other id below Next had ended (committed or
	// not) when the snapshot was taken.
	InFlight []uint64
}

// ChangeLogState returns the change log's identity, pruning mark and the
// marks of a current snapshot.
func (s *Store) ChangeLogState(ctx context.Context) (ChangeLog, error) {
	var (
		l                     ChangeLog
		pruned, settled, next string
		inFlight              []string
	)
	// One snapshot for all marks (a statement's snapshot).
	err := s.pool.QueryRow(ctx,
		`WITH snap AS (SELECT pg_current_snapshot() AS s)
		 SELECT identity::text, pruned_xid::text, pg_snapshot_xmin(snap.s)::text, pg_snapshot_xmax(snap.s)::text,
		        ARRAY(SELECT x::text FROM pg_snapshot_xip(snap.s) AS x ORDER BY x)
		 FROM watch_state, snap WHERE id = 1`).Scan(&l.Identity, &pruned, &settled, &next, &inFlight)
	if err == nil {
		l.Pruned, err = parseXID(pruned)
	}
	if err == nil {
		l.Settled, err = parseXID(settled)
	}
	if err == nil {
		l.Next, err = parseXID(next)
	}
	for _, x := range inFlight {
		if err != nil {
			break
		}
		var id uint64
		id, err = parseXID(x)
		l.InFlight = append(l.InFlight, id)
	}
	if err != nil {
		return ChangeLog{}, dbError(ctx, "read change log state", err)
	}
	return l, nil
}

func parseXID(s string) (uint64, error) {
	x, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("transaction id %q: %w", s, err)
	}
	return x, nil
}

// Changes returns, in (xid, id) order, at most limit rows after from of
// transactions that have ended, and the settled mark of the snapshot that
// read them: when fewer than limit rows come back, every row before
// {settled} has been returned (now or earlier) and no row can still appear
// there.
func (s *Store) Changes(ctx context.Context, from Position, limit int) ([]ChangeRow, uint64, error) {
	// One statement, one snapshot: the rows and the mark agree.
	rows, err := s.pool.Query(ctx,
		`WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
		 SELECT snap.xmin::text, c.xid::text, c.id, c.path, c.kind, c.versions, c.mac, c.created_at
		 FROM snap LEFT JOIN LATERAL (
		   SELECT xid, id, path, kind, versions, mac, created_at FROM secret_changes
		   WHERE (xid, id) > ($1::text::xid8, $2::bigint) AND xid < snap.xmin
		   ORDER BY xid, id LIMIT $3) c ON true
		 ORDER BY c.xid, c.id`,
		strconv.FormatUint(from.XID, 10), from.ID, limit)
	if err != nil {
		return nil, 0, dbError(ctx, "read changes", err)
	}
	var (
		settled string
		out     []ChangeRow
	)
	for rows.Next() {
		var (
			xid  *string
			id   *int64
			path *string
			kind *int16
			vs   []int64
			mac  []byte
			at   *time.Time
		)
		if err := rows.Scan(&settled, &xid, &id, &path, &kind, &vs, &mac, &at); err != nil {
			rows.Close()
			return nil, 0, dbError(ctx, "read changes", err)
		}
		if xid == nil {
			continue // no rows: only the mark
		}
		x, err := parseXID(*xid)
		if err != nil {
			rows.Close()
			return nil, 0, err
		}
		out = append(out, ChangeRow{Position: Position{XID: x, ID: *id}, Path: *path,
			Kind: secret.ChangeKind(*kind), Versions: vs, MAC: mac, At: *at})
	}
	if err := rows.Err(); err != nil {
		return nil, 0, dbError(ctx, "read changes", err)
	}
	mark, err := parseXID(settled)
	if err != nil {
		return nil, 0, err
	}
	return out, mark, nil
}

// PruneChanges deletes the change log's rows older than retention, and
// notes the highest transaction id it deleted so that a cursor that would
// have needed them is refused. It returns how many rows it deleted.
func (s *Store) PruneChanges(ctx context.Context, retention time.Duration) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx,
		`WITH gone AS (DELETE FROM secret_changes WHERE created_at < now() - $1::interval RETURNING xid),
		  mark AS (UPDATE watch_state SET pruned_xid = greatest(pruned_xid, (SELECT max(xid) FROM gone))
		           WHERE id = 1 AND EXISTS (SELECT 1 FROM gone))
		  SELECT count(*) FROM gone`, retention).Scan(&n)
	if err != nil {
		return 0, dbError(ctx, "prune change log", err)
	}
	return n, nil
}
