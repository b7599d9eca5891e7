package audit

import "time"

// Record is one audit record as stored.
type Record struct {
	// ID is assigned by the database.
	ID int64
	// ChainID, Lane and Seq place the record in its chain: the process
	// that wrote it, one of its lanes, and its position there.
	ChainID []byte
	Lane    int16
	Seq     int64
	At      time.Time
	// RequestID, Caller, Peer and Procedure say which request this was.
	RequestID string
	Caller    string
	Peer      string
	Procedure string
	// Target is what the request was about (a path, a policy name, a token
	// id), never a secret.
	Target string
	// Decision is "allow" or "deny", Reason why; Code is how it ended.
	Decision   string
	Reason     string
	Code       string
	DurationUS int64
	// MAC chains the record to the one before it on its lane; nil on the
	// unauthenticated lane.
	MAC []byte
}

// Checkpoint is where a pruned chain continues.
type Checkpoint struct {
	ChainID []byte
	Lane    int16
	Seq     int64
	LastMAC []byte
	MAC     []byte
}

// Filter selects audit records.
type Filter struct {
	Since, Until *time.Time
	Caller       string
	TargetPrefix string
	Procedure    string // full procedure, or a suffix starting with '/'
	Decision     string
	Limit        int
	// Before continues a listing: records strictly older than (At, ID).
	BeforeAt *time.Time
	BeforeID int64
}
