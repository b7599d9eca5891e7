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
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/spike-dev/spike/keeper/internal/keyring"
	"github.com/spike-dev/spike/keeper/internal/server"
	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/logtest"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
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
	src, err := ca.Source(keeperID)
	if err != nil {
		t.Fatalf("keeper SVID: %v", err)
	}
	srv := server.New(server.Config{NexusID: nexusID, KDF: testKDF})
	t.Cleanup(srv.Seal)
	mux := http.NewServeMux()
	mux.Handle(srv.Handler())
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
	return &keeper{ca: ca, url: "https://" + ln.Addr().String(), tlsLog: tlsLog}
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
	httpClient := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(keeperID)))
	return keeperv1connect.NewKeeperServiceClient(httpClient, k.url)
}

// nexus returns a client that presents Nexus's SVID.
func (k *keeper) nexus(t *testing.T) keeperv1connect.KeeperServiceClient {
	return k.client(t, k.ca, nexusID)
}

// rpcErr is the part of an error a caller sees.
type rpcErr struct {
	Code connect.Code
	Msg  string
}

func errOf(err error) rpcErr {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return rpcErr{Code: connect.CodeOf(err), Msg: "not a connect error"}
	}
	return rpcErr{Code: ce.Code(), Msg: ce.Message()}
}

func wantErr(t *testing.T, what string, err error, want rpcErr) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want %v", what, want.Code)
	}
	if diff := cmp.Diff(want, errOf(err)); diff != "" {
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
	if len(sealed.GetKeyringId()) != keyring.IDSize || len(sealed.GetKdfParams()) == 0 || len(sealed.GetCiphertext()) == 0 {
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
	unsealed := &keeperv1.StatusResponse{Unsealed: true, KeyringId: sealed.GetKeyringId(), ActiveKeyVersion: 1}
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
		rpcErr{connect.CodeFailedPrecondition, "keeper is unsealed with a different keyring"})
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
		{"unknown version", &keeperv1.DecryptDataKeyRequest{DekId: dekID, Wrapped: gen.Msg.GetWrapped(), RootKeyVersion: 2}},
		{"empty", &keeperv1.DecryptDataKeyRequest{DekId: dekID, RootKeyVersion: 1}},
	}
	for _, tt := range tests {
		_, err := c.DecryptDataKey(t.Context(), connect.NewRequest(tt.req))
		wantErr(t, tt.name, err, rpcErr{connect.CodeDataLoss, "data key does not unwrap: tampered or from another keyring"})
	}
}

func TestSealed(t *testing.T) {
	t.Parallel()
	c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
	sealedErr := rpcErr{connect.CodeFailedPrecondition, "keeper is sealed"}
	_, err := c.GenerateDataKey(t.Context(), connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: dekID}))
	wantErr(t, "GenerateDataKey", err, sealedErr)
	_, err = c.DecryptDataKey(t.Context(), connect.NewRequest(&keeperv1.DecryptDataKeyRequest{
		DekId: dekID, Wrapped: make([]byte, 60), RootKeyVersion: 1,
	}))
	wantErr(t, "DecryptDataKey", err, sealedErr)
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
	sealed := initKeyring(t, c, password)
	wrong := rpcErr{connect.CodeInvalidArgument, "wrong password"}

	wantErr(t, "Unseal while sealed", unseal(t, c, "not the password", sealed), wrong)
	wantStatus(t, c, &keeperv1.StatusResponse{})

	if err := unseal(t, c, password, sealed); err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	unsealed := &keeperv1.StatusResponse{Unsealed: true, KeyringId: sealed.GetKeyringId(), ActiveKeyVersion: 1}
	wantErr(t, "Unseal while unsealed", unseal(t, c, "not the password", sealed), wrong)
	wantStatus(t, c, unsealed)

	tampered := &keeperv1.SealedKeyring{
		KeyringId:  sealed.GetKeyringId(),
		KdfParams:  sealed.GetKdfParams(),
		Ciphertext: bytes.Clone(sealed.GetCiphertext()),
	}
	tampered.Ciphertext[20] ^= 1
	wantErr(t, "Unseal with tampered ciphertext", unseal(t, c, password, tampered), wrong)
	wantStatus(t, c, unsealed)
}

func TestInvalidArgument(t *testing.T) {
	t.Parallel()
	c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
	sealed := initKeyring(t, c, password)
	badParams := &keeperv1.SealedKeyring{KeyringId: sealed.GetKeyringId(), KdfParams: []byte{9}, Ciphertext: sealed.GetCiphertext()}
	shortID := &keeperv1.SealedKeyring{KeyringId: sealed.GetKeyringId()[1:], KdfParams: sealed.GetKdfParams(), Ciphertext: sealed.GetCiphertext()}
	pwErr := "password must be 8 to 1024 bytes"
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"Init password too short", func() error {
			_, err := c.Init(t.Context(), connect.NewRequest(&keeperv1.InitRequest{Password: []byte("1234567")}))
			return err
		}, pwErr},
		{"Init password too long", func() error {
			_, err := c.Init(t.Context(), connect.NewRequest(&keeperv1.InitRequest{Password: bytes.Repeat([]byte("a"), 1025)}))
			return err
		}, pwErr},
		{"Unseal password too short", func() error { return unseal(t, c, "", sealed) }, pwErr},
		{"Unseal without keyring", func() error { return unseal(t, c, password, nil) }, "keyring is required"},
		{"Unseal short keyring id", func() error { return unseal(t, c, password, shortID) }, "keyring.keyring_id must be 16 bytes"},
		{"Unseal bad kdf params", func() error { return unseal(t, c, password, badParams) }, "keyring.kdf_params: invalid kdf params: unknown version 9"},
		{"GenerateDataKey short dek id", func() error {
			_, err := c.GenerateDataKey(t.Context(), connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: dekID[1:]}))
			return err
		}, "dek_id must be 16 bytes"},
		{"DecryptDataKey no dek id", func() error {
			_, err := c.DecryptDataKey(t.Context(), connect.NewRequest(&keeperv1.DecryptDataKeyRequest{}))
			return err
		}, "dek_id must be 16 bytes"},
	}
	for _, tt := range tests {
		wantErr(t, tt.name, tt.call(), rpcErr{connect.CodeInvalidArgument, tt.want})
	}
	wantStatus(t, c, &keeperv1.StatusResponse{})
}

func TestPasswordLengthBounds(t *testing.T) {
	t.Parallel()
	for _, n := range []int{8, 1024} {
		c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
		pw := strings.Repeat("p", n)
		if err := unseal(t, c, pw, initKeyring(t, c, pw)); err != nil {
			t.Errorf("Unseal with a %d-byte password: %v", n, err)
		}
	}
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
	for _, id := range []spiffeid.ID{appID, keeperID, identity.Pilot(td)} {
		_, err := k.client(t, k.ca, id).Status(t.Context(), connect.NewRequest(&keeperv1.StatusRequest{}))
		wantErr(t, "Status as "+id.String(), err, rpcErr{connect.CodePermissionDenied, "caller is not nexus"})
		_, err = k.client(t, k.ca, id).Init(t.Context(), connect.NewRequest(&keeperv1.InitRequest{Password: []byte(password)}))
		wantErr(t, "Init as "+id.String(), err, rpcErr{connect.CodePermissionDenied, "caller is not nexus"})
	}
	wantStatus(t, k.nexus(t), &keeperv1.StatusResponse{})
}
