package verify

import (
	"errors"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, name := range []string{"index.html", ".hidden", "a b", "ü.txt", "..x", "x..", "-"} {
		if err := CheckName(name); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", "a/b", "/", `a\b`, `..\..\x`, "a\x00b"} {
		err := CheckName(name)
		if !errors.Is(err, ErrBadName) {
			t.Errorf("CheckName(%q) = %v, want ErrBadName", name, err)
		}
	}
}
