package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

// The HTTP server's timeouts are for unary calls; streamDeadlines lifts
// them, over HTTP/2, for the streaming procedures only. A handler that
// answers after the server's write timeout gets through on a stream, and
// is cut on any other procedure.
func TestStreamDeadlines(t *testing.T) {
	t.Parallel()
	h := streamDeadlines(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(400 * time.Millisecond)
		_, _ = io.WriteString(w, "answer")
	}))
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.Config.ReadTimeout = 100 * time.Millisecond
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.StartTLS()
	t.Cleanup(srv.Close)
	for path, through := range map[string]bool{
		nexusv1connect.OperatorServiceBackupProcedure:       true,
		nexusv1connect.OperatorServiceRestoreProcedure:      true,
		nexusv1connect.OperatorServiceVerifyBackupProcedure: true,
		nexusv1connect.OperatorServiceStatusProcedure:       false,
	} {
		resp, err := srv.Client().Post(srv.URL+path, "application/octet-stream", strings.NewReader("x"))
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("%s: HTTP/%d, want HTTP/2", path, resp.ProtoMajor)
			}
		}
		if got := err == nil && string(body) == "answer"; got != through {
			t.Errorf("%s: answered %v (%q, %v), want %v", path, got, body, err, through)
		}
	}
}
