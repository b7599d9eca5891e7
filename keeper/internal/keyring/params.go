package keyring

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// Limits on Argon2id parameters. Encoded parameters come from storage that
// SPIKE does not trust, so the limits keep an edited row from making Keeper
// spend unbounded memory or time.
const (
	// SaltSize is the length of an Argon2id salt in bytes.
	SaltSize = 16
	// MaxMemoryKiB is the largest Argon2id memory cost accepted: 4 GiB.
	MaxMemoryKiB = 4 << 20
	// MaxTime is the largest Argon2id time cost (passes) accepted.
	MaxTime = 64
)

// paramsVersion is the format version of encoded Params.
const paramsVersion = 1

// paramsSize is the length of encoded Params: version, time, memory,
// threads, salt.
const paramsSize = 1 + 4 + 4 + 1 + SaltSize

// ErrInvalidParams reports Argon2id parameters outside the accepted limits
// or an encoding that cannot be read.
var ErrInvalidParams = errors.New("invalid kdf params")

// Params are the Argon2id parameters and salt that turn the admin password
// into the key that seals a keyring. They are stored beside the sealed
// keyring; they are not secret.
type Params struct {
	// Time is the number of passes over the memory.
	Time uint32
	// MemoryKiB is the memory cost in KiB.
	MemoryKiB uint32
	// Threads is the degree of parallelism.
	Threads uint8
	// Salt is SaltSize random bytes, fresh for every seal.
	Salt []byte
}

// NewParams returns validated parameters with a fresh random salt.
func NewParams(time, memoryKiB uint32, threads uint8) (Params, error) {
	p := Params{Time: time, MemoryKiB: memoryKiB, Threads: threads, Salt: make([]byte, SaltSize)}
	if _, err := rand.Read(p.Salt); err != nil {
		return Params{}, fmt.Errorf("read salt: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Params{}, err
	}
	return p, nil
}

// Validate reports whether p is within the accepted limits.
func (p Params) Validate() error {
	switch {
	case p.Time == 0 || p.Time > MaxTime:
		return fmt.Errorf("%w: time %d not in 1..%d", ErrInvalidParams, p.Time, MaxTime)
	case p.Threads == 0:
		return fmt.Errorf("%w: threads must be at least 1", ErrInvalidParams)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > MaxMemoryKiB:
		// Argon2 silently raises memory below 8 KiB per thread; refuse it
		// instead so the stored parameters are the ones used.
		return fmt.Errorf("%w: memory %d KiB not in %d..%d", ErrInvalidParams, p.MemoryKiB, 8*uint32(p.Threads), MaxMemoryKiB)
	case len(p.Salt) != SaltSize:
		return fmt.Errorf("%w: salt is %d bytes, want %d", ErrInvalidParams, len(p.Salt), SaltSize)
	}
	return nil
}

// MarshalBinary encodes p: a version byte, time and memory as big-endian
// uint32, threads, then the salt.
func (p Params) MarshalBinary() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, paramsSize)
	b = append(b, paramsVersion)
	b = binary.BigEndian.AppendUint32(b, p.Time)
	b = binary.BigEndian.AppendUint32(b, p.MemoryKiB)
	b = append(b, p.Threads)
	b = append(b, p.Salt...)
	return b, nil
}

// UnmarshalBinary decodes parameters encoded by MarshalBinary and validates
// them.
func (p *Params) UnmarshalBinary(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", ErrInvalidParams)
	}
	if b[0] != paramsVersion {
		return fmt.Errorf("%w: unknown version %d", ErrInvalidParams, b[0])
	}
	if len(b) != paramsSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrInvalidParams, len(b), paramsSize)
	}
	q := Params{
		Time:      binary.BigEndian.Uint32(b[1:5]),
		MemoryKiB: binary.BigEndian.Uint32(b[5:9]),
		Threads:   b[9],
		Salt:      append([]byte(nil), b[10:]...),
	}
	if err := q.Validate(); err != nil {
		return err
	}
	*p = q
	return nil
}
