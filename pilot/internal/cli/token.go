package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"connectrpc.com/connect"
)

// maxTokenLen bounds what is read from the token file; admin tokens are far
// shorter.
const maxTokenLen = 4096

// errNoTokenFile says that spike does not know where the admin token lives.
var errNoTokenFile = errors.New("cannot tell where to keep the admin token: set SPIKE_TOKEN_FILE, or HOME for the default ~/.spike/token")

// readToken returns the admin token saved in path, or "" when there is no
// such file (or no path). It refuses a file that other users may access,
// since a token is as good as the admin password until it expires.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the admin token: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read the admin token: %w", err)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("token file %s is not a regular file; remove it and run: spike login", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return "", fmt.Errorf("token file %s has mode %04o, so other users may read it; refusing to use it.\n"+
			"Make it private with: chmod 600 %s (and consider 'spike logout' and 'spike login' for a fresh token)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenLen+1))
	if err != nil {
		return "", fmt.Errorf("read the admin token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if !validToken(token) {
		return "", fmt.Errorf("token file %s does not hold an admin token; log in again with: spike login", path)
	}
	return token, nil
}

// validToken reports whether token can go into an Authorization header:
// 1 to maxTokenLen visible ASCII characters.
func validToken(token string) bool {
	if token == "" || len(token) > maxTokenLen {
		return false
	}
	for i := range len(token) {
		if token[i] < 0x21 || token[i] > 0x7e {
			return false
		}
	}
	return true
}

// saveToken writes token to path atomically with mode 0600, creating the
// directory (mode 0700) if it is missing: a reader sees the old token or the
// new one, never a partial file.
func saveToken(path, token string) (err error) {
	if path == "" {
		return errNoTokenFile
	}
	if !validToken(token) {
		return errors.New("the admin token from Nexus is unusable (empty or not printable ASCII)")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save the admin token: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("save the admin token: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("save the admin token: %w", err)
	}
	if _, err := tmp.WriteString(token + "\n"); err != nil {
		return fmt.Errorf("save the admin token: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save the admin token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save the admin token: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save the admin token: %w", err)
	}
	return nil
}

// removeToken deletes the token file; a file that is already gone is fine.
func removeToken(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the admin token: %w", err)
	}
	return nil
}

// bearerToken is a client interceptor that sends the admin token as
// "Authorization: Bearer <token>" with every request.
type bearerToken string

func (t bearerToken) header() string { return "Bearer " + string(t) }

// WrapUnary adds the header to unary calls.
func (t bearerToken) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			req.Header().Set("Authorization", t.header())
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient adds the header to streaming calls.
func (t bearerToken) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", t.header())
		return conn
	}
}

// WrapStreamingHandler leaves handlers alone: the interceptor is for clients.
func (t bearerToken) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
