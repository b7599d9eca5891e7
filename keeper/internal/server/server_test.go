package server_test

import (
	"bytes"
	"errors"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/spike-dev/spike/keeper/internal/keyring"
	"github.com/spike-dev/spike/keeper/internal/server"
	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
	"github.com/spike-dev/spike/shared/testkit/logtest"
)

var (
	td       = spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain)
	nexusID  = identity.Nexus(td)
	keeperID = identity.Keeper(td, "1")
	appID    = spiffeid.RequireFromSegments(td, "app", "x")
)

// testKDF is a cheap Argon2id cost so tests run fast.
var testKDF = keyring.Params{Time: 1, MemoryKiB: 1024, Threads: 1}

const password = "correct horse battery staple"

// keeper is a Keeper server running over real SPIFFE mTLS on loopback.
type keeper struct {
	ca  *devca.CA
	url string
	id  spiffeid.ID
	srv *server.Server
	// tlsLog collects the HTTP server's error log: refused handshakes.
	tlsLog *logtest.Buffer
}

// startKeeper serves a sealed Keeper whose TLS layer admits the peers that
// authorize accepts. Production admits only Nexus.
func startKeeper(t *testing.T, authorize tlsconfig.Authorizer) *keeper {
	t.Helper()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatalf("devca.New: %v", err)
	}
	return startKeeperOn(t, ca, keeperID, authorize)
}

// startKeeperOn is startKeeper with Keeper's SVID for id minted by ca.
func startKeeperOn(t *testing.T, ca *devca.CA, id spiffeid.ID, authorize tlsconfig.Authorizer) *keeper {
	t.Helper()
	src, err := ca.Source(id)
	if err != nil {
		t.Fatalf("keeper SVID: %v", err)
	}
	srv := server.New(server.Config{NexusID: nexusID, TrustDomain: td, KDF: testKDF})
	t.Cleanup(srv.Drop)
	mux := http.NewServeMux()
	mux.Handle(srv.Handler())
	mux.Handle(srv.PeerHandler())
	httpSrv := mtls.NewServer(mux, mtls.ServerConfig(src, authorize), nil)
	tlsLog := &logtest.Buffer{}
	httpSrv.ErrorLog = log.New(tlsLog, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- mtls.Serve(t.Context(), httpSrv, ln) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &keeper{ca: ca, url: "https://" + ln.Addr().String(), id: id, srv: srv, tlsLog: tlsLog}
}

// client returns a Keeper client presenting an SVID for id minted by ca
// and trusting Keeper's CA.
func (k *keeper) client(t *testing.T, ca *devca.CA, id spiffeid.ID) keeperv1connect.KeeperServiceClient {
	t.Helper()
	s, err := ca.Mint(id, time.Hour)
	if err != nil {
		t.Fatalf("client SVID: %v", err)
	}
	src := svid.Static(s, k.ca.Bundle())
	httpClient := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(k.id)))
	return keeperv1connect.NewKeeperServiceClient(httpClient, k.url)
}

// nexus returns a client that presents Nexus's SVID.
func (k *keeper) nexus(t *testing.T) keeperv1connect.KeeperServiceClient {
	t.Helper()
	return k.client(t, k.ca, nexusID)
}

// rpcErr is the part of an error a caller sees: code, message and the
// reasons of its ErrorDetails (nil when it has none).
type rpcErr struct {
	Code    connect.Code
	Msg     string
	Reasons []keeperv1.ErrorDetail_Reason
}

// refused is the error Keeper returns for reason: its code, msg and one
// ErrorDetail with reason. The codes are written out here by hand, not
// taken from the code under test.
func refused(reason keeperv1.ErrorDetail_Reason, msg string) rpcErr {
	codes := map[keeperv1.ErrorDetail_Reason]connect.Code{
		keeperv1.ErrorDetail_REASON_SEALED:           connect.CodeFailedPrecondition,
		keeperv1.ErrorDetail_REASON_WRONG_PASSWORD:   connect.CodePermissionDenied,
		keeperv1.ErrorDetail_REASON_CORRUPT_KEYRING:  connect.CodeDataLoss,
		keeperv1.ErrorDetail_REASON_CORRUPT_DATA_KEY: connect.CodeDataLoss,
		keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH: connect.CodeFailedPrecondition,
		keeperv1.ErrorDetail_REASON_INVALID_REQUEST:  connect.CodeInvalidArgument,
		keeperv1.ErrorDetail_REASON_WRONG_SHARES:     connect.CodePermissionDenied,
		keeperv1.ErrorDetail_REASON_STALE_KEYRING:    connect.CodeFailedPrecondition,
	}
	return rpcErr{Code: codes[reason], Msg: msg, Reasons: []keeperv1.ErrorDetail_Reason{reason}}
}

func errOf(t *testing.T, err error) rpcErr {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return rpcErr{Code: connect.CodeOf(err), Msg: "not a connect error"}
	}
	got := rpcErr{Code: ce.Code(), Msg: ce.Message()}
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			t.Errorf("error detail %s: %v", d.Type(), err)
			continue
		}
		ed, ok := v.(*keeperv1.ErrorDetail)
		if !ok {
			t.Errorf("error detail of type %s, want %s", d.Type(), "spike.keeper.v1.ErrorDetail")
			continue
		}
		got.Reasons = append(got.Reasons, ed.GetReason())
	}
	return got
}

func wantErr(t *testing.T, what string, err error, want rpcErr) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want %v", what, want.Code)
	}
	if diff := cmp.Diff(want, errOf(t, err)); diff != "" {
		t.Errorf("%s error (-want +got):\n%s", what, diff)
	}
}

func initKeyring(t *testing.T, c keeperv1connect.KeeperServiceClient, pw string) *keeperv1.SealedKeyring {
	t.Helper()
	resp, err := c.Init(t.Context(), connect.NewRequest(&keeperv1.InitRequest{Password: []byte(pw)}))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return resp.Msg.GetKeyring()
}

func unseal(t *testing.T, c keeperv1connect.KeeperServiceClient, pw string, sealed *keeperv1.SealedKeyring) error {
	t.Helper()
	_, err := c.Unseal(t.Context(), connect.NewRequest(&keeperv1.UnsealRequest{Password: []byte(pw), Keyring: sealed}))
	return err
}

func status(t *testing.T, c keeperv1connect.KeeperServiceClient) *keeperv1.StatusResponse {
	t.Helper()
	resp, err := c.Status(t.Context(), connect.NewRequest(&keeperv1.StatusRequest{}))
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return resp.Msg
}

func wantStatus(t *testing.T, c keeperv1connect.KeeperServiceClient, want *keeperv1.StatusResponse) {
	t.Helper()
	if diff := cmp.Diff(want, status(t, c), protocmp.Transform()); diff != "" {
		t.Errorf("Status (-want +got):\n%s", diff)
	}
}

var dekID = bytes.Repeat([]byte{7}, keyring.DEKIDSize)

func TestInitUnsealDataKeyRoundTrip(t *testing.T) {
	t.Parallel()
	c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)

	wantStatus(t, c, &keeperv1.StatusResponse{})
	sealed := initKeyring(t, c, password)
	if len(sealed.GetKeyringId()) != keyring.IDSize || len(sealed.GetSealed()) == 0 || sealed.GetEpoch() != 1 ||
		len(sealed.GetKdfParams()) != 0 || len(sealed.GetCiphertext()) != 0 {
		t.Fatalf("Init returned an incomplete keyring: %v", sealed)
	}
	wantStatus(t, c, &keeperv1.StatusResponse{}) // Init is stateless.

	resp, err := c.Unseal(t.Context(), connect.NewRequest(&keeperv1.UnsealRequest{Password: []byte(password), Keyring: sealed}))
	if err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	if diff := cmp.Diff(sealed.GetKeyringId(), resp.Msg.GetKeyringId()); diff != "" {
		t.Errorf("Unseal keyring id (-want +got):\n%s", diff)
	}
	unsealed := &keeperv1.StatusResponse{Unsealed: true, KeyringId: sealed.GetKeyringId(), ActiveKeyVersion: 1, OldestKeyVersion: 1, Epoch: 1, Source: "unseal"}
	wantStatus(t, c, unsealed)

	gen, err := c.GenerateDataKey(t.Context(), connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: dekID}))
	if err != nil {
		t.Fatalf("GenerateDataKey: %v", err)
	}
	if len(gen.Msg.GetPlaintext()) != keyring.KeySize || gen.Msg.GetRootKeyVersion() != 1 {
		t.Fatalf("GenerateDataKey: %d-byte key, root key version %d", len(gen.Msg.GetPlaintext()), gen.Msg.GetRootKeyVersion())
	}
	dec, err := c.DecryptDataKey(t.Context(), connect.NewRequest(&keeperv1.DecryptDataKeyRequest{
		DekId: dekID, Wrapped: gen.Msg.GetWrapped(), RootKeyVersion: gen.Msg.GetRootKeyVersion(),
	}))
	if err != nil {
		t.Fatalf("DecryptDataKey: %v", err)
	}
	if diff := cmp.Diff(gen.Msg.GetPlaintext(), dec.Msg.GetPlaintext()); diff != "" {
		t.Errorf("data key (-want +got):\n%s", diff)
	}

	// Unsealing again with the same keyring is a no-op.
	if err := unseal(t, c, password, sealed); err != nil {
		t.Errorf("second Unseal with the same keyring: %v", err)
	}
	// Another keyring is refused while one is held.
	other := initKeyring(t, c, password)
	wantErr(t, "Unseal with another keyring", unseal(t, c, password, other),
		refused(keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH, "keeper is unsealed with a different keyring"))
	wantStatus(t, c, unsealed)

	// Unsealing again still unwraps data keys made before.
	dec, err = c.DecryptDataKey(t.Context(), connect.NewRequest(&keeperv1.DecryptDataKeyRequest{
		DekId: dekID, Wrapped: gen.Msg.GetWrapped(), RootKeyVersion: 1,
	}))
	if err != nil {
		t.Fatalf("DecryptDataKey after second Unseal: %v", err)
	}
	if !bytes.Equal(gen.Msg.GetPlaintext(), dec.Msg.GetPlaintext()) {
		t.Error("data key changed after second Unseal")
	}
}

func TestDecryptDataKeyDataLoss(t *testing.T) {
	t.Parallel()
	c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
	if err := unseal(t, c, password, initKeyring(t, c, password)); err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	gen, err := c.GenerateDataKey(t.Context(), connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: dekID}))
	if err != nil {
		t.Fatalf("GenerateDataKey: %v", err)
	}
	flipped := bytes.Clone(gen.Msg.GetWrapped())
	flipped[len(flipped)/2] ^= 1
	tests := []struct {
		name string
		req  *keeperv1.DecryptDataKeyRequest
	}{
		{"flipped byte", &keeperv1.DecryptDataKeyRequest{DekId: dekID, Wrapped: flipped, RootKeyVersion: 1}},
		{"other dek id", &keeperv1.DecryptDataKeyRequest{DekId: make([]byte, keyring.DEKIDSize), Wrapped: gen.Msg.GetWrapped(), RootKeyVersion: 1}},
		{"version 0", &keeperv1.DecryptDataKeyRequest{DekId: dekID, Wrapped: gen.Msg.GetWrapped(), RootKeyVersion: 0}},
		{"empty", &keeperv1.DecryptDataKeyRequest{DekId: dekID, RootKeyVersion: 1}},
	}
	for _, tt := range tests {
		_, err := c.DecryptDataKey(t.Context(), connect.NewRequest(tt.req))
		wantErr(t, tt.name, err, refused(keeperv1.ErrorDetail_REASON_CORRUPT_DATA_KEY, "data key does not unwrap: tampered or from another keyring"))
	}
	// A version above the active one is a rotation this Keeper missed: it
	// says so, so that Nexus asks another Keeper.
	_, err = c.DecryptDataKey(t.Context(), connect.NewRequest(&keeperv1.DecryptDataKeyRequest{DekId: dekID, Wrapped: gen.Msg.GetWrapped(), RootKeyVersion: 2}))
	wantErr(t, "newer version", err, refused(keeperv1.ErrorDetail_REASON_STALE_KEYRING,
		"root key version 2 is newer than the keyring held: this Keeper is fetching the newer keyring from its peers; ask another"))
}

// TestRefused checks the code, message and ErrorDetail reason of each
// refusal, first while Keeper is sealed and then while it holds a keyring.
// No refusal changes Keeper's state.
func TestRefused(t *testing.T) {
	t.Parallel()
	c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
	// A keyring in format 1, as stored before format 2: it must keep
	// unsealing. TestRefusedFormat2 has the format 2 cases.
	sealed := sealKeyring(t, password)
	// altered returns a copy of sealed changed by alter.
	altered := func(alter func(k *keeperv1.SealedKeyring)) *keeperv1.SealedKeyring {
		k := proto.CloneOf(sealed)
		alter(k)
		return k
	}
	unsealWith := func(pw string, k *keeperv1.SealedKeyring) func() error {
		return func() error { return unseal(t, c, pw, k) }
	}
	const (
		invalid  = keeperv1.ErrorDetail_REASON_INVALID_REQUEST
		corrupt  = keeperv1.ErrorDetail_REASON_CORRUPT_KEYRING
		wrongPw  = keeperv1.ErrorDetail_REASON_WRONG_PASSWORD
		pwLength = "password must be 8 to 1024 bytes long"
		newPwLen = "password must be 12 to 1024 bytes long"
	)
	tests := []struct {
		name string
		call func() error
		want rpcErr
	}{
		{"Init password too short", func() error {
			_, err := c.Init(t.Context(), connect.NewRequest(&keeperv1.InitRequest{Password: []byte("12345678901")}))
			return err
		}, refused(invalid, newPwLen)},
		{"Init password too weak", func() error {
			_, err := c.Init(t.Context(), connect.NewRequest(&keeperv1.InitRequest{Password: []byte("password1234")}))
			return err
		}, refused(invalid, "password is too easy to guess: estimated 1.1e+04 guesses, want at least 1e+08; add more unrelated words")},
		{"Init password too long", func() error {
			_, err := c.Init(t.Context(), connect.NewRequest(&keeperv1.InitRequest{Password: bytes.Repeat([]byte("a"), 1025)}))
			return err
		}, refused(invalid, newPwLen)},
		{"Unseal password too short", unsealWith("", sealed), refused(invalid, pwLength)},
		{"Unseal without keyring", unsealWith(password, nil), refused(invalid, "keyring is required")},
		{"GenerateDataKey short dek id", func() error {
			_, err := c.GenerateDataKey(t.Context(), connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: dekID[1:]}))
			return err
		}, refused(invalid, "dek_id must be 16 bytes")},
		{"DecryptDataKey no dek id", func() error {
			_, err := c.DecryptDataKey(t.Context(), connect.NewRequest(&keeperv1.DecryptDataKeyRequest{}))
			return err
		}, refused(invalid, "dek_id must be 16 bytes")},

		{"Unseal empty keyring", unsealWith(password, &keeperv1.SealedKeyring{}),
			refused(corrupt, "keyring.keyring_id must be 16 bytes")},
		{"Unseal short keyring id", unsealWith(password, altered(func(k *keeperv1.SealedKeyring) { k.KeyringId = k.KeyringId[1:] })),
			refused(corrupt, "keyring.keyring_id must be 16 bytes")},
		{"Unseal unknown kdf params version", unsealWith(password, altered(func(k *keeperv1.SealedKeyring) { k.KdfParams = []byte{9} })),
			refused(corrupt, "keyring.kdf_params: invalid kdf params: unknown version 9")},
		{"Unseal kdf memory over the cap", unsealWith(password, altered(func(k *keeperv1.SealedKeyring) { copy(k.KdfParams[5:9], []byte{0xff, 0xff, 0xff, 0xff}) })),
			refused(corrupt, "keyring.kdf_params: invalid kdf params: memory 4294967295 KiB is over the cap of 262144 KiB")},
		{"Unseal ciphertext of a nonce only", unsealWith(password, altered(func(k *keeperv1.SealedKeyring) { k.Ciphertext = k.Ciphertext[:12] })),
			refused(corrupt, "keyring: malformed sealed keyring: ciphertext is 12 bytes, too short for a nonce and tag")},

		{"Unseal wrong password", unsealWith("not the password", sealed), refused(wrongPw, "wrong password")},
		// An altered ciphertext does not authenticate: the cipher cannot
		// tell it from a wrong password.
		{"Unseal altered ciphertext", unsealWith(password, altered(func(k *keeperv1.SealedKeyring) { k.Ciphertext[20] ^= 1 })),
			refused(wrongPw, "wrong password")},
		{"Unseal altered kdf salt", unsealWith(password, altered(func(k *keeperv1.SealedKeyring) { k.KdfParams[len(k.KdfParams)-1] ^= 1 })),
			refused(wrongPw, "wrong password")},
	}

	for _, tt := range tests {
		wantErr(t, "sealed: "+tt.name, tt.call(), tt.want)
	}
	sealedErr := refused(keeperv1.ErrorDetail_REASON_SEALED, "keeper is sealed")
	_, err := c.GenerateDataKey(t.Context(), connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: dekID}))
	wantErr(t, "sealed: GenerateDataKey", err, sealedErr)
	_, err = c.DecryptDataKey(t.Context(), connect.NewRequest(&keeperv1.DecryptDataKeyRequest{
		DekId: dekID, Wrapped: make([]byte, 60), RootKeyVersion: 1,
	}))
	wantErr(t, "sealed: DecryptDataKey", err, sealedErr)
	wantStatus(t, c, &keeperv1.StatusResponse{})

	if err := unseal(t, c, password, sealed); err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	for _, tt := range tests {
		wantErr(t, "unsealed: "+tt.name, tt.call(), tt.want)
	}
	wantErr(t, "unsealed: Unseal another keyring", unseal(t, c, password, initKeyring(t, c, password)),
		refused(keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH, "keeper is unsealed with a different keyring"))
	wantStatus(t, c, &keeperv1.StatusResponse{Unsealed: true, KeyringId: sealed.GetKeyringId(), ActiveKeyVersion: 1, OldestKeyVersion: 1, Epoch: sealed.GetEpoch(), Source: "unseal"})
}

// TestPasswordLengthBounds checks that Unseal takes the shortest and
// longest passwords in use. The keyrings are sealed here, not by Init: a
// new password must be longer and harder to guess than the old minimum,
// and keyrings sealed under it must still unseal.
func TestPasswordLengthBounds(t *testing.T) {
	t.Parallel()
	for _, n := range []int{8, 1024} {
		c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
		pw := strings.Repeat("p", n)
		if err := unseal(t, c, pw, sealKeyring(t, pw)); err != nil {
			t.Errorf("Unseal with a %d-byte password: %v", n, err)
		}
	}
}

// sealKeyring seals a new keyring under pw without asking Keeper, which
// would refuse a weak pw.
func sealKeyring(t *testing.T, pw string) *keeperv1.SealedKeyring {
	t.Helper()
	ring, err := keyring.New()
	if err != nil {
		t.Fatalf("keyring.New: %v", err)
	}
	defer ring.Drop()
	params, err := keyring.NewParams(testKDF.Time, testKDF.MemoryKiB, testKDF.Threads)
	if err != nil {
		t.Fatalf("NewParams: %v", err)
	}
	kdfParams, ciphertext, err := keyring.Seal(ring, []byte(pw), params)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return &keeperv1.SealedKeyring{KeyringId: ring.ID(), KdfParams: kdfParams, Ciphertext: ciphertext}
}

// TestTLSRefusesOthers checks that the TLS layer admits only Nexus with an
// SVID from the trust bundle: everything else fails the handshake and never
// reaches a handler.
func TestTLSRefusesOthers(t *testing.T) {
	t.Parallel()
	k := startKeeper(t, tlsconfig.AuthorizeID(nexusID))
	foreign, err := devca.New(td)
	if err != nil {
		t.Fatalf("devca.New: %v", err)
	}
	tests := []struct {
		name string
		ca   *devca.CA
		id   spiffeid.ID
		// wantLog is the reason the server logs for the refused handshake.
		wantLog string
	}{
		{"workload", k.ca, appID, `unexpected ID "spiffe://spike.local/app/x"`},
		{"peer keeper", k.ca, keeperID, `unexpected ID "spiffe://spike.local/spike/keeper/1"`},
		{"nexus id from an untrusted CA", foreign, nexusID, "certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		_, err := k.client(t, tt.ca, tt.id).Status(t.Context(), connect.NewRequest(&keeperv1.StatusRequest{}))
		if err == nil {
			t.Errorf("%s: Status succeeded, want a TLS handshake failure", tt.name)
			continue
		}
		// The client sees the server's alert or a closed connection,
		// depending on timing; the server's log says why it refused.
		if code := connect.CodeOf(err); code == connect.CodePermissionDenied {
			t.Errorf("%s: Status reached the handler: %v", tt.name, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(k.tlsLog.String(), tt.wantLog) {
			if time.Now().After(deadline) {
				t.Errorf("%s: server log %q does not contain %q", tt.name, k.tlsLog.String(), tt.wantLog)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestHandlerRefusesOthers checks the handler's own caller check, with a TLS
// layer that admits the whole trust domain.
func TestHandlerRefusesOthers(t *testing.T) {
	t.Parallel()
	k := startKeeper(t, tlsconfig.AuthorizeMemberOf(td))
	// The caller check carries no ErrorDetail: no reason of Keeper's
	// state or data, only who is asking.
	notNexus := rpcErr{Code: connect.CodePermissionDenied, Msg: "caller is not nexus"}
	for _, id := range []spiffeid.ID{appID, keeperID, identity.Pilot(td)} {
		_, err := k.client(t, k.ca, id).Status(t.Context(), connect.NewRequest(&keeperv1.StatusRequest{}))
		wantErr(t, "Status as "+id.String(), err, notNexus)
		_, err = k.client(t, k.ca, id).Init(t.Context(), connect.NewRequest(&keeperv1.InitRequest{Password: []byte(password)}))
		wantErr(t, "Init as "+id.String(), err, notNexus)
	}
	wantStatus(t, k.nexus(t), &keeperv1.StatusResponse{})
}
