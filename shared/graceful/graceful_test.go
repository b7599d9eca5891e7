package graceful

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestNewServerLimits(t *testing.T) {
	t.Parallel()
	l := Limits{Read: 3 * time.Second, Write: 4 * time.Second, MaxHeaderBytes: 1234}
	srv := NewServer(http.NotFoundHandler(), l, nil)
	got := []any{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes}
	want := []any{readHeaderTimeout, l.Read, l.Write, idleTimeout, l.MaxHeaderBytes}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("limit %d = %v, want %v", i, got[i], want[i])
		}
	}
	if srv.ErrorLog == nil {
		t.Error("no error log: the server's errors would go to the standard logger")
	}
}

// Serve returns nil once its context is done and the server has shut down,
// and the listener no longer accepts connections.
func TestServeStopsWithContext(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(http.NotFoundHandler(), Limits{Read: time.Second, Write: time.Second}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, func() error { return srv.Serve(ln) }) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v, want nil after a clean shutdown", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("still accepting connections after shutdown")
	}
}
