package identity

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestIsKeeper(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("spike.local")
	tests := []struct {
		id   string
		want bool
	}{
		{"spiffe://spike.local/spike/keeper/1", true},
		{"spiffe://spike.local/spike/keeper/eu-west", true},
		{"spiffe://spike.local/spike/keeper", false},
		{"spiffe://spike.local/spike/keeper/1/x", false},
		{"spiffe://spike.local/spike/keepers/1", false},
		{"spiffe://spike.local/spike/nexus", false},
		{"spiffe://other.local/spike/keeper/1", false},
	}
	for _, tt := range tests {
		if got := IsKeeper(td, spiffeid.RequireFromString(tt.id)); got != tt.want {
			t.Errorf("IsKeeper(%s) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
