package server_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/testkit/logtest"
)

// TestRequestLogMatchesAudit: each request logs one JSON line whose
// request_id is the one in the Spike-Request-Id header and in the request's
// audit record, with the same caller, RPC and code, and no secret value.
func TestRequestLogMatchesAudit(t *testing.T) {
	t.Parallel()
	var out logtest.Buffer
	s := newStackLogging(t, "", slog.New(slog.NewJSONHandler(&out, nil)))
	s.init()
	const value = "LOGGED-NEVER-4f1c"
	ctx := t.Context()

	put, err := s.secrets(adminID).PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{
		Path: "apps/log", Data: map[string]string{"k": value}}))
	if err != nil {
		t.Fatal(err)
	}
	get, err := s.secrets(adminID).GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/log"}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.secrets(adminID).GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/none"}))
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("get of a missing secret: %v, want a Connect error", err)
	}

	type line struct {
		Msg       string `json:"msg"`
		RequestID string `json:"request_id"`
		Caller    string `json:"caller"`
		Procedure string `json:"procedure"`
		Code      string `json:"code"`
	}
	logged := map[string]line{}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", sc.Text(), err)
		}
		if l.Msg == "request" {
			if _, dup := logged[l.RequestID]; dup {
				t.Errorf("request %s logged twice", l.RequestID)
			}
			logged[l.RequestID] = l
		}
	}
	if strings.Contains(out.String(), value) {
		t.Error("the log holds a secret value")
	}

	for _, c := range []struct {
		id        string
		procedure string
		code      string
	}{
		{put.Header().Get("Spike-Request-Id"), nexusv1connect.SecretServicePutSecretProcedure, "ok"},
		{get.Header().Get("Spike-Request-Id"), nexusv1connect.SecretServiceGetSecretProcedure, "ok"},
		{ce.Meta().Get("Spike-Request-Id"), nexusv1connect.SecretServiceGetSecretProcedure, "not_found"},
	} {
		l, ok := logged[c.id]
		if c.id == "" || !ok {
			t.Errorf("%s (%s): request id %q not in the log", c.procedure, c.code, c.id)
			continue
		}
		if l.Caller != adminID.String() || l.Procedure != c.procedure || l.Code != c.code {
			t.Errorf("log line %+v, want caller %s, procedure %s, code %s", l, adminID, c.procedure, c.code)
		}
		var caller, procedure, code string
		err := s.db().QueryRow(ctx, `SELECT caller, procedure, code FROM audit_log WHERE request_id = $1`, c.id).
			Scan(&caller, &procedure, &code)
		if err != nil {
			t.Errorf("audit record of %s: %v", c.id, err)
			continue
		}
		if caller != l.Caller || procedure != l.Procedure || code != l.Code {
			t.Errorf("audit record (%s, %s, %s) differs from the log line %+v", caller, procedure, code, l)
		}
	}
}
