package postgres

import (
	"github.com/spike-dev/spike/nexus/internal/fault"
)

func errNotFound(path string) error {
	return fault.New(fault.NotFound, "secret %s not found", path)
}
