package keyring

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// Caps on Argon2id parameters. Encoded parameters come from storage that
// SPIKE does not trust: a database writer could raise them to make Keeper
// allocate gigabytes or spin for minutes at unseal. Parameters beyond a cap
// are refused before any derivation. The caps are several times Keeper's
// default cost (64 MiB, 3 passes, 4 threads), which stays well inside them.
const (
	// SaltSize is the length of an Argon2id salt in bytes.
	SaltSize = 16
	// MaxMemoryKiB is the largest Argon2id memory cost accepted: 256 MiB.
	MaxMemoryKiB = 256 << 10
	// MaxTime is the largest Argon2id time cost (passes) accepted.
	MaxTime = 16
	// MaxThreads is the largest Argon2id parallelism accepted.
	MaxThreads = 16
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

// Validate reports whether p is within the accepted limits. An error
// wraps ErrInvalidParams and names the parameter and its limit.
func (p Params) Validate() error {
	switch {
	case p.Time == 0:
		return fmt.Errorf("%w: time %d is below the minimum of 1 pass", ErrInvalidParams, p.Time)
	case p.Time > MaxTime:
		return fmt.Errorf("%w: time %d is over the cap of %d passes", ErrInvalidParams, p.Time, MaxTime)
	case p.Threads == 0:
		return fmt.Errorf("%w: threads %d is below the minimum of 1", ErrInvalidParams, p.Threads)
	case p.Threads > MaxThreads:
		return fmt.Errorf("%w: threads %d is over the cap of %d", ErrInvalidParams, p.Threads, MaxThreads)
	case p.MemoryKiB > MaxMemoryKiB:
		return fmt.Errorf("%w: memory %d KiB is over the cap of %d KiB", ErrInvalidParams, p.MemoryKiB, MaxMemoryKiB)
	case p.MemoryKiB < 8*uint32(p.Threads):
		// Argon2 silently raises memory below 8 KiB per thread; refuse it
		// instead so the stored parameters are the ones used.
		return fmt.Errorf("%w: memory %d KiB is below 8 KiB per thread (%d KiB)", ErrInvalidParams, p.MemoryKiB, 8*uint32(p.Threads))
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
