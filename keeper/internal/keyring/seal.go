package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// sealLabel separates keyring ciphertexts from every other use of AES-GCM
// in SPIKE.
const sealLabel = "spike keyring v1"

// ErrWrongPassword reports that a well-formed sealed keyring did not
// authenticate: the password is wrong, or the ID, parameters or ciphertext
// were altered. The two cannot be told apart.
var ErrWrongPassword = errors.New("wrong password or corrupted keyring")

// ErrMalformed reports a sealed keyring that cannot be a keyring sealed by
// Seal, whatever the password: an ID or parameters that do not decode, a
// ciphertext too short to hold a nonce and tag, or keys that authenticate
// but do not decode.
var ErrMalformed = errors.New("malformed sealed keyring")

// Seal encrypts the keyring's root keys with AES-256-GCM under a key derived
// from password with Argon2id. It returns the encoded params and the nonce
// followed by the ciphertext. The additional data binds the keyring ID and
// the params, so neither can be swapped. Use fresh params (NewParams) for
// every seal.
func Seal(k *Keyring, password []byte, params Params) (kdfParams, ciphertext []byte, err error) {
	kdfParams, err = params.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	plaintext, err := k.encodeKeys()
	if err != nil {
		return nil, nil, err
	}
	defer clear(plaintext)
	aead, err := kekAEAD(password, params)
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, fmt.Errorf("read nonce: %w", err)
	}
	ciphertext = aead.Seal(nonce, nonce, plaintext, sealAAD(k.id[:], kdfParams))
	return kdfParams, ciphertext, nil
}

// Open decrypts a keyring sealed by Seal. A keyring that does not decode
// returns an error wrapping ErrMalformed; one that decodes but does not
// authenticate returns ErrWrongPassword.
func Open(keyringID, kdfParams, ciphertext, password []byte) (*Keyring, error) {
	if len(keyringID) != IDSize {
		return nil, fmt.Errorf("%w: id is %d bytes, want %d", ErrMalformed, len(keyringID), IDSize)
	}
	var params Params
	if err := params.UnmarshalBinary(kdfParams); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	aead, err := kekAEAD(password, params)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes, too short for a nonce and tag", ErrMalformed, len(ciphertext))
	}
	nonce, sealed := ciphertext[:aead.NonceSize()], ciphertext[aead.NonceSize():]
	plaintext, err := aead.Open(nil, nonce, sealed, sealAAD(keyringID, kdfParams))
	if err != nil {
		return nil, ErrWrongPassword
	}
	defer clear(plaintext)
	k := &Keyring{}
	copy(k.id[:], keyringID)
	if err := k.decodeKeys(plaintext); err != nil {
		return nil, fmt.Errorf("%w: decode keys: %w", ErrMalformed, err)
	}
	return k, nil
}

// kekAEAD derives the key-encryption key from password and returns
// AES-256-GCM under it. The derived key is zeroed before returning.
func kekAEAD(password []byte, params Params) (cipher.AEAD, error) {
	kek := argon2.IDKey(password, params.Salt, params.Time, params.MemoryKiB, params.Threads, KeySize)
	defer clear(kek)
	return newGCM(kek)
}

// sealAAD is the additional data of a sealed keyring: label, ID, params.
// The label and ID have fixed lengths, so the concatenation is unambiguous.
func sealAAD(id, kdfParams []byte) []byte {
	aad := make([]byte, 0, len(sealLabel)+len(id)+len(kdfParams))
	aad = append(aad, sealLabel...)
	aad = append(aad, id...)
	return append(aad, kdfParams...)
}

// newGCM returns AES-GCM with the standard 96-bit random nonce.
func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("new cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("new gcm: %w", err)
	}
	return aead, nil
}
