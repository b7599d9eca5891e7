package server_test

import (
	"errors"
	"testing"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

// Every procedure of every Nexus service goes through the request
// pipeline, which authorizes and audits it: a workload without policies is
// refused each one, the refusal carries the pipeline's request id, and
// each refusal is in the audit trail. A handler that skipped the pipeline
// would answer without a request id, and without a record.
//
// Workloads call with Connect, gRPC or gRPC-Web clients: the pipeline
// serves all three alike.
func TestEveryProcedureGoesThroughThePipeline(t *testing.T) {
	t.Parallel()
	protocols := map[string][]connect.ClientOption{
		"connect":  nil,
		"grpc":     {connect.WithGRPC()},
		"grpc-web": {connect.WithGRPCWeb()},
	}
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testPipeline(t, opts)
		})
	}
}

func testPipeline(t *testing.T, opts []connect.ClientOption) {
	t.Helper()
	s := newStack(t)
	s.init()
	nobody := s.httpClient(spiffeid.RequireFromPath(td, "/app/nobody"))

	// The admin's put and get work over the protocol.
	admin := nexusv1connect.NewSecretServiceClient(s.httpClient(adminID), s.url, append(opts, withToken(s.token))...)
	if _, err := admin.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{
		Path: "apps/p", Data: map[string]string{"k": "v"}})); err != nil {
		t.Fatal(err)
	}
	got, err := admin.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/p"}))
	if err != nil || got.Msg.GetSecret().GetData()["k"] != "v" || got.Header().Get("Spike-Request-Id") == "" {
		t.Fatalf("get over the protocol: %v, %v; want k=v and a request id", got, err)
	}

	var procedures []string
	streaming := map[string]protoreflect.MethodDescriptor{}
	for _, file := range []protoreflect.FileDescriptor{
		nexusv1.File_spike_nexus_v1_secret_proto, nexusv1.File_spike_nexus_v1_policy_proto,
		nexusv1.File_spike_nexus_v1_operator_proto, nexusv1.File_spike_nexus_v1_audit_proto,
	} {
		for i := range file.Services().Len() {
			svc := file.Services().Get(i)
			for j := range svc.Methods().Len() {
				m := svc.Methods().Get(j)
				p := "/" + string(svc.FullName()) + "/" + string(m.Name())
				procedures = append(procedures, p)
				if m.IsStreamingClient() || m.IsStreamingServer() {
					streaming[p] = m
				}
			}
		}
	}
	if len(procedures) < 24 {
		t.Fatalf("found %d procedures, want every one of the 24 or more Nexus serves", len(procedures))
	}
	ids := map[string]string{}
	for _, p := range procedures {
		// An empty message decodes as any request message.
		c := connect.NewClient[emptypb.Empty, emptypb.Empty](nobody, s.url+p, opts...)
		err := callEmpty(t, c, streaming[p])
		var ce *connect.Error
		if !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a refusal", p, err)
			continue
		}
		switch ce.Code() {
		case connect.CodePermissionDenied, connect.CodeInvalidArgument:
		default:
			t.Errorf("%s: %v, want it refused (PermissionDenied, or InvalidArgument for a missing path)", p, err)
		}
		id := ce.Meta().Get("Spike-Request-Id")
		if id == "" {
			t.Errorf("%s: refused without a request id: it did not go through the pipeline", p)
		}
		ids[id] = p
	}

	audit := nexusv1connect.NewAuditServiceClient(s.httpClient(adminID), s.url, withToken(s.token))
	resp, err := audit.ListAuditRecords(t.Context(), connect.NewRequest(&nexusv1.ListAuditRecordsRequest{
		Caller: "spiffe://spike.local/app/nobody", PageSize: 1000,
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Msg.GetRecords() {
		if p, ok := ids[r.GetRequestId()]; ok && r.GetRpc() == p && r.GetDecision() == "deny" {
			delete(ids, r.GetRequestId())
		}
	}
	for id, p := range ids {
		t.Errorf("%s (request %s): no audit record of the refusal", p, id)
	}
}

// callEmpty calls a procedure with empty messages, as the kind of call
// (unary or streaming) its method is.
func callEmpty(t *testing.T, c *connect.Client[emptypb.Empty, emptypb.Empty], m protoreflect.MethodDescriptor) error {
	t.Helper()
	switch {
	case m == nil:
		_, err := c.CallUnary(t.Context(), connect.NewRequest(&emptypb.Empty{}))
		return err
	case m.IsStreamingServer():
		stream, err := c.CallServerStream(t.Context(), connect.NewRequest(&emptypb.Empty{}))
		if err != nil {
			return err
		}
		for stream.Receive() {
		}
		_ = stream.Close()
		return stream.Err()
	}
	stream := c.CallClientStream(t.Context())
	_ = stream.Send(&emptypb.Empty{})
	_, err := stream.CloseAndReceive()
	return err
}
