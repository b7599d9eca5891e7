package cli

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// writeTestToken writes content to path with mode (0 means 0600), creating
// the directory.
func writeTestToken(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if mode == 0 {
		mode = 0o600
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

// checkTokenFile checks that path holds want with mode wantMode (when want
// is set), or that it does not exist (when wantNone is set).
func checkTokenFile(t *testing.T, path, want string, wantMode os.FileMode, wantNone bool) {
	t.Helper()
	info, err := os.Stat(path)
	switch {
	case wantNone:
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("token file %s: Stat() error = %v, want it gone", path, err)
		}
		return
	case want == "":
		return
	case err != nil:
		t.Fatalf("token file: %v", err)
	}
	if got := info.Mode().Perm(); got != wantMode {
		t.Errorf("token file mode = %04o, want %04o", got, wantMode)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("token file holds %q, want %q", got, want)
	}
}

// TestSaveToken checks that the token is saved with mode 0600 in a
// directory created with mode 0700, read back exactly, and replaced
// without leaving temporary files, also over a file that others could read.
func TestSaveToken(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "home", ".spike")
	path := filepath.Join(dir, "token")
	if err := saveToken(path, "spk_one.abc"); err != nil {
		t.Fatalf("saveToken(): %v", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o700 {
		t.Errorf("directory mode = %04o, want 0700", got)
	}
	checkTokenFile(t, path, "spk_one.abc\n", 0o600, false)
	if got, err := readToken(path); err != nil || got != "spk_one.abc" {
		t.Errorf("readToken() = %q, %v, want %q", got, err, "spk_one.abc")
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := saveToken(path, "spk_two.def"); err != nil {
		t.Fatalf("saveToken() over an existing file: %v", err)
	}
	checkTokenFile(t, path, "spk_two.def\n", 0o600, false)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "token" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %q, want only the token file", names)
	}

	for _, bad := range []string{"", "has space", "new\nline", strings.Repeat("x", maxTokenLen+1)} {
		if err := saveToken(path, bad); err == nil {
			t.Errorf("saveToken(%q) succeeded", bad)
		}
	}
	if err := saveToken("", "spk_three"); !errors.Is(err, errNoTokenFile) {
		t.Errorf("saveToken without a path: error = %v, want %v", err, errNoTokenFile)
	}
	checkTokenFile(t, path, "spk_two.def\n", 0o600, false)
}

// TestSaveTokenAtomic checks that a reader racing with writers always sees
// a whole token, the old or the new one.
func TestSaveTokenAtomic(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "token")
	tokens := []string{"spk_a." + strings.Repeat("a", 2000), "spk_b." + strings.Repeat("b", 2000)}
	if err := saveToken(path, tokens[0]); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			if err := saveToken(path, tokens[i%2]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		got, err := readToken(path)
		if err != nil {
			t.Fatalf("readToken() while saving: %v", err)
		}
		if got != tokens[0] && got != tokens[1] {
			t.Fatalf("readToken() = a partial token of %d bytes", len(got))
		}
		select {
		case <-done:
			return
		default:
		}
	}
}

func TestReadToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string // "" for no file
		mode    os.FileMode
		dir     bool // make the path a directory
		noPath  bool
		want    string
		wantErr []string
	}{
		{name: "no file", want: ""},
		{name: "no path", noPath: true, want: ""},
		{name: "token", content: "spk_x.y\n", want: "spk_x.y"},
		{name: "token with CRLF", content: "spk_x.y\r\n", want: "spk_x.y"},
		{name: "world readable", content: "spk_x.y\n", mode: 0o644, wantErr: []string{"has mode 0644", "other users may read it", "chmod 600 "}},
		{name: "group readable", content: "spk_x.y\n", mode: 0o640, wantErr: []string{"has mode 0640", "chmod 600 "}},
		{name: "group writable", content: "spk_x.y\n", mode: 0o620, wantErr: []string{"chmod 600 "}},
		{name: "empty", content: "\n", wantErr: []string{"does not hold an admin token", "spike login"}},
		{name: "two words", content: "spk_x y\n", wantErr: []string{"does not hold an admin token"}},
		{name: "too long", content: strings.Repeat("x", maxTokenLen+1), wantErr: []string{"does not hold an admin token"}},
		{name: "directory", dir: true, wantErr: []string{"is not a regular file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "token")
			switch {
			case tt.noPath:
				path = ""
			case tt.dir:
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			case tt.content != "":
				writeTestToken(t, path, tt.content, tt.mode)
			}
			got, err := readToken(path)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("readToken() = %q, want an error", got)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("readToken() error %q does not contain %q", err, s)
					}
				}
				if strings.Contains(err.Error(), "spk_x") {
					t.Errorf("readToken() error %q reveals the token", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("readToken() = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}

func TestRemoveToken(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "token")
	writeTestToken(t, path, "spk_x", 0)
	if err := removeToken(path); err != nil {
		t.Fatalf("removeToken(): %v", err)
	}
	checkTokenFile(t, path, "", 0, true)
	if err := removeToken(path); err != nil {
		t.Errorf("removeToken() of a removed file: %v", err)
	}
}
