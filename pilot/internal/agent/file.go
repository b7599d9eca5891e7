package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// upToDate reports whether path is a regular file that holds content with
// mode perm.
func upToDate(path string, content []byte, perm os.FileMode) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return false, fmt.Errorf("%s is not a regular file", path)
	}
	if info.Mode().Perm() != perm || info.Size() != int64(len(content)) {
		return false, nil
	}
	old, err := io.ReadAll(io.LimitReader(f, maxRenderBytes+1))
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return bytes.Equal(old, content), nil
}

// writeFile replaces path with content atomically: a reader sees the old
// file or the new one, never a part. The temporary file is created in the
// same directory with mode 0600 (never wider while it is written), synced,
// given perm, renamed over path, and the directory synced so that the
// rename survives a crash.
func writeFile(path string, content []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(content); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: open its directory to sync it: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync its directory: %w", path, err)
	}
	return nil
}

// CheckRendered reports whether every template of cfg has been rendered:
// its destination is a regular file. It reads nothing else, for health
// checks.
func CheckRendered(cfg Config) error {
	var errs []error
	for _, t := range cfg.Templates {
		info, err := os.Stat(t.Destination)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			errs = append(errs, fmt.Errorf("template %s: not rendered yet", t.Name))
		case err != nil:
			errs = append(errs, fmt.Errorf("template %s: %w", t.Name, err))
		case !info.Mode().IsRegular():
			errs = append(errs, fmt.Errorf("template %s: %s is not a regular file", t.Name, t.Destination))
		}
	}
	return errors.Join(errs...)
}
