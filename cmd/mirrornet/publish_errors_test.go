package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// A stale admin socket (left by a node that crashed) is named as such, not
// reported as "io: read/write on closed pipe".
func TestPublishStaleSocket(t *testing.T) {
	data := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(data, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the socket file stays; nobody listens
	_, _, err = runInProcess(t, "publish", sampleDir(t), "--data", data)
	if err == nil || strings.Contains(err.Error(), "closed pipe") || !strings.Contains(err.Error(), "stale socket") {
		t.Fatalf("publish to a stale socket: %v", err)
	}
}
