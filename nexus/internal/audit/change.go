package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// A change log row (what WatchSecrets sends) is authenticated under the
// audit key like a kept outcome: bound to the writing transaction's id,
// the path, the secret's incarnation (none for a removal), the kind of
// change and the versions, so that a row forged in the database, copied
// to another transaction or path, or left by an earlier incarnation of a
// secret removed and created again, does not check.

// ChangeMAC authenticates the change log row of the request's mutation.
func (e *Entry) ChangeMAC(xid uint64, path string, incarnation []byte, kind int16, versions []int64) ([]byte, error) {
	if e.keyErr != nil {
		return nil, e.keyErr
	}
	if e.key == nil {
		return nil, fault.Wrap(fault.Unavailable, errors.New("no audit key to authenticate the change"), "SPIKE is sealed")
	}
	return changeMAC(e.key, xid, path, incarnation, kind, versions), nil
}

// CheckChange reports whether a change log row authenticates.
func (t *Trail) CheckChange(ctx context.Context, xid uint64, path string, incarnation []byte, kind int16, versions []int64, mac []byte) (bool, error) {
	key, err := t.macKey(ctx)
	if err != nil {
		return false, err
	}
	if key == nil {
		return false, fault.New(fault.FailedPrecondition, "SPIKE is sealed").Because(fault.Sealed)
	}
	defer clear(key)
	return hmac.Equal(changeMAC(key, xid, path, incarnation, kind, versions), mac), nil
}

func changeMAC(key []byte, xid uint64, path string, incarnation []byte, kind int16, versions []int64) []byte {
	h := hmac.New(sha256.New, key)
	b := []byte("spike change v1")
	b = binary.BigEndian.AppendUint64(b, xid)
	b = binary.BigEndian.AppendUint16(b, uint16(kind))
	b = binary.BigEndian.AppendUint32(b, uint32(len(versions)))
	for _, v := range versions {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(path)))
	b = append(b, path...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(incarnation)))
	b = append(b, incarnation...)
	h.Write(b)
	return h.Sum(nil)
}
