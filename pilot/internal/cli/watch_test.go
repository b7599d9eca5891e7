package cli

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// fakeWatches holds, per fake, the requests its WatchSecrets received.
var fakeWatches sync.Map // *fakeNexus → *[]*nexusv1.WatchSecretsRequest

// WatchSecrets of the fake: the first stream sends two events and ends
// cleanly (as Nexus's idle timeout does), the second one event and then
// fails, so that the CLI resumes once and then stops.
func (f *fakeNexus) WatchSecrets(_ context.Context, req *connect.Request[nexusv1.WatchSecretsRequest],
	stream *connect.ServerStream[nexusv1.WatchSecretsResponse]) error {
	v, _ := fakeWatches.LoadOrStore(f, &[]*nexusv1.WatchSecretsRequest{})
	reqs := v.(*[]*nexusv1.WatchSecretsRequest)
	*reqs = append(*reqs, req.Msg)
	at := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if len(*reqs) == 1 {
		if err := stream.Send(&nexusv1.WatchSecretsResponse{Cursor: "c0"}); err != nil {
			return err
		}
		return stream.Send(&nexusv1.WatchSecretsResponse{Cursor: "c1", Events: []*nexusv1.SecretEvent{
			{Path: "apps/a", Kind: nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, Version: 2, Versions: []int64{2}, CommittedAt: at,
				Data: map[string]string{"k": "v"}},
			{Path: "apps/b", Kind: nexusv1.ChangeKind_CHANGE_KIND_REMOVED, CommittedAt: at},
		}})
	}
	if err := stream.Send(&nexusv1.WatchSecretsResponse{Cursor: "c2", Events: []*nexusv1.SecretEvent{
		{Path: "apps/a", Kind: nexusv1.ChangeKind_CHANGE_KIND_DELETED, Version: 2, Versions: []int64{1, 2}, CommittedAt: at},
	}}); err != nil {
		return err
	}
	return connect.NewError(connect.CodeOutOfRange, errors.New("cursor: older than the retained changes"))
}

func TestRunSecretWatch(t *testing.T) {
	t.Parallel()
	fake := &fakeNexus{}
	url := fake.serve(t)
	stdout, stderr, code := runSpikeAt(t, url, "secret", "watch", "apps/", "--cursor", "start")
	want := "2026-01-02T03:04:05Z  written          apps/a  versions [2]  current 2\n" +
		"2026-01-02T03:04:05Z  removed          apps/b  versions []  current 0\n" +
		"2026-01-02T03:04:05Z  deleted          apps/a  versions [1,2]  current 2\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	if code == 0 || !strings.Contains(stderr, "older than the retained changes") || !strings.Contains(stderr, "cursor: c2\n") {
		t.Errorf("exit %d, stderr %q: want a failure naming the cause and the last cursor c2", code, stderr)
	}
	v, _ := fakeWatches.Load(fake)
	reqs := *v.(*[]*nexusv1.WatchSecretsRequest)
	if len(reqs) != 2 || reqs[0].GetCursor() != "start" || reqs[1].GetCursor() != "c1" || reqs[0].GetPrefix() != "apps/" || reqs[0].GetIncludeData() {
		t.Errorf("requests %v: want the given cursor, then a resume from c1", reqs)
	}

	fake2 := &fakeNexus{}
	stdout, _, _ = runSpikeAt(t, fake2.serve(t), "secret", "watch", "apps/", "-o", "json", "--data")
	first, _, _ := strings.Cut(stdout, "\n")
	if want := `{"path":"apps/a","kind":"written","version":2,"versions":[2],"committed_at":"2026-01-02T03:04:05Z","data":{"k":"v"},"cursor":"c1"}`; first != want {
		t.Errorf("json line %s, want %s", first, want)
	}
	v, _ = fakeWatches.Load(fake2)
	if reqs := *v.(*[]*nexusv1.WatchSecretsRequest); !reqs[0].GetIncludeData() {
		t.Error("--data did not ask for data")
	}

	if _, stderr, code := runSpikeAt(t, url, "secret", "watch", "apps/", "--data"); code == 0 || !strings.Contains(stderr, "needs -o json") {
		t.Errorf("--data without -o json: exit %d, %q", code, stderr)
	}
}
