package verify

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadName means a directory entry's name cannot be written safely as a
// file name: publish refuses to make such an entry and get refuses to write
// one, by the same rule (NameProblem).
var ErrBadName = errors.New("bundle: file name not allowed in a bundle")

// NameProblem says why name may not be a directory entry of a bundle, or
// returns "" when it may. A name is refused if writing it under an output
// directory could escape that directory or mean a path on another system:
// empty, "." or "..", or containing a slash, a backslash (a separator on
// Windows) or a NUL byte.
func NameProblem(name string) string {
	switch {
	case name == "":
		return "is empty"
	case name == "." || name == "..":
		return "is a path element, not a name"
	case strings.Contains(name, "/"):
		return "contains a slash"
	case strings.Contains(name, `\`):
		return "contains a backslash (a path separator on Windows)"
	case strings.Contains(name, "\x00"):
		return "contains a NUL byte"
	}
	return ""
}

// CheckName returns nil when name may be a directory entry of a bundle, else
// an error wrapping ErrBadName that says why.
func CheckName(name string) error {
	if why := NameProblem(name); why != "" {
		return fmt.Errorf("%w: %q %s", ErrBadName, name, why)
	}
	return nil
}
