package release

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mirrornet/mirrornet/protocol"
)

// ErrBadRef: an app reference is not "APP-ID" or "APP-ID@VERSION".
var ErrBadRef = errors.New("release: app reference must be APP-ID or APP-ID@VERSION")

// AppRef names an app and optionally one of its versions.
type AppRef struct {
	App string
	// Version is 0 for "the latest".
	Version uint64
}

func (r AppRef) String() string {
	if r.Version == 0 {
		return r.App
	}
	return fmt.Sprintf("%s@%d", r.App, r.Version)
}

// ParseAppRef parses "APP-ID" (latest) or "APP-ID@N" (N ≥ 1).
func ParseAppRef(s string) (AppRef, error) {
	app, ver, hasVer := strings.Cut(s, "@")
	if !protocol.IsAppID(app) {
		return AppRef{}, fmt.Errorf("%w: %q is not an app ID", ErrBadRef, app)
	}
	ref := AppRef{App: app}
	if hasVer {
		n, err := strconv.ParseUint(ver, 10, 64)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != ver {
			return AppRef{}, fmt.Errorf("%w: version %q is not a positive integer", ErrBadRef, ver)
		}
		ref.Version = n
	}
	return ref, nil
}
