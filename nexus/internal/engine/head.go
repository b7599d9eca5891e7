package engine

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/spike-dev/spike/proto/spike/nexus/storage/v1"

	"github.com/spike-dev/spike/nexus/internal/secret"
)

// encodeHead is the stored encoding of h (protobuf: compact and quick to
// decode; a head is opened on every read and write).
func encodeHead(h *secret.Head) ([]byte, error) {
	m := &storagev1.Head{
		Incarnation: h.Incarnation,
		Current:     h.Current,
		Oldest:      h.Oldest,
		MaxVersions: h.MaxVersions,
		CasRequired: h.CASRequired,
		Custom:      h.Custom,
		Versions:    make([]*storagev1.HeadVersion, len(h.Versions)),
	}
	for i, v := range h.Versions {
		m.Versions[i] = &storagev1.HeadVersion{
			Version: v.Version, State: storagev1.VersionState(v.State), CreatedBy: v.CreatedBy, Key: v.Key,
		}
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// decodeHead is the inverse of encodeHead. A head that decodes into
// nonsense (an unknown state) is an error; the caller reports data loss.
func decodeHead(b []byte) (*secret.Head, error) {
	var m storagev1.Head
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	h := &secret.Head{
		Incarnation: m.GetIncarnation(),
		Current:     m.GetCurrent(),
		Oldest:      m.GetOldest(),
		MaxVersions: m.GetMaxVersions(),
		CASRequired: m.GetCasRequired(),
		Custom:      m.GetCustom(),
		Versions:    make([]secret.HeadVersion, len(m.GetVersions())),
	}
	if len(h.Custom) == 0 {
		h.Custom = nil
	}
	for i, v := range m.GetVersions() {
		state := secret.State(v.GetState())
		if state < secret.Active || state > secret.Destroyed {
			return nil, fmt.Errorf("version %d has unknown state %d", v.GetVersion(), v.GetState())
		}
		h.Versions[i] = secret.HeadVersion{Version: v.GetVersion(), State: state, CreatedBy: v.GetCreatedBy(), Key: v.GetKey()}
		if len(h.Versions[i].Key) == 0 {
			h.Versions[i].Key = nil
		}
	}
	return h, nil
}
