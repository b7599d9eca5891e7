package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// rawTable is the scratch table of the raw reference, created in the
// stack's database and dropped afterwards.
const rawTable = "bench_raw"

// rawTarget is the physical reference: the same database reads and writes
// of a value's size, straight through pgx, with one connection per worker.
type rawTarget struct {
	pool  *pgxpool.Pool
	value []byte
	rows  int
	next  atomic.Int64
}

// openRaw connects to dsn with a pool of conns connections, opens them all,
// and creates rawTable with rows rows of valueSize bytes (replacing a table
// left by an interrupted run).
func openRaw(ctx context.Context, dsn string, conns, valueSize, rows int) (*rawTarget, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("raw reference: %w", err)
	}
	cfg.MaxConns = int32(conns)
	cfg.MinConns = int32(conns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("raw reference: %w", err)
	}
	t := &rawTarget{pool: pool, value: []byte(randomValue(valueSize)), rows: rows}
	if err := t.setUp(ctx, conns); err != nil {
		pool.Close()
		return nil, fmt.Errorf("raw reference: %w", err)
	}
	return t, nil
}

func (t *rawTarget) setUp(ctx context.Context, conns int) error {
	// Open every connection now, so that no cell pays for connecting.
	held := make([]*pgxpool.Conn, 0, conns)
	var err error
	for range conns {
		var c *pgxpool.Conn
		if c, err = t.pool.Acquire(ctx); err != nil {
			break
		}
		held = append(held, c)
	}
	for _, c := range held {
		c.Release()
	}
	if err != nil {
		return err
	}
	stmts := []string{
		`DROP TABLE IF EXISTS ` + rawTable,
		`CREATE TABLE ` + rawTable + ` (id bigint PRIMARY KEY, v bytea NOT NULL)`,
	}
	for _, s := range stmts {
		if _, err := t.pool.Exec(ctx, s); err != nil {
			return err
		}
	}
	_, err = t.pool.Exec(ctx,
		`INSERT INTO `+rawTable+` (id, v) SELECT i, $2::bytea FROM generate_series(0, $1::bigint - 1) AS i`,
		t.rows, t.value)
	if err != nil {
		return err
	}
	_, err = t.pool.Exec(ctx, `ANALYZE `+rawTable)
	return err
}

// selectRow reads a random row by primary key and checks its size.
func (t *rawTarget) selectRow(ctx context.Context) error {
	id := rand.IntN(t.rows)
	var v []byte
	if err := t.pool.QueryRow(ctx, `SELECT v FROM `+rawTable+` WHERE id = $1`, id).Scan(&v); err != nil {
		return fmt.Errorf("select %d: %w", id, err)
	}
	if len(v) != len(t.value) {
		return fmt.Errorf("select %d: %d bytes, want %d", id, len(v), len(t.value))
	}
	return nil
}

// insertRow inserts one new row, committed on its own.
func (t *rawTarget) insertRow(ctx context.Context) error {
	id := int64(t.rows) + t.next.Add(1)
	if _, err := t.pool.Exec(ctx, `INSERT INTO `+rawTable+` (id, v) VALUES ($1, $2)`, id, t.value); err != nil {
		return fmt.Errorf("insert %d: %w", id, err)
	}
	return nil
}

// serverVersion returns PostgreSQL's version, or "" if it cannot tell.
func (t *rawTarget) serverVersion(ctx context.Context) string {
	var v string
	if err := t.pool.QueryRow(ctx, `SHOW server_version`).Scan(&v); err != nil {
		return ""
	}
	return v
}

// close drops the scratch table, even when ctx has ended, and closes the
// pool.
func (t *rawTarget) close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := t.pool.Exec(ctx, `DROP TABLE IF EXISTS `+rawTable)
	t.pool.Close()
	if err != nil {
		return fmt.Errorf("drop %s: %w", rawTable, err)
	}
	return nil
}
