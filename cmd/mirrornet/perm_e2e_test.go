package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// unprivileged returns the credentials of the user nobody and a directory
// every user can enter holding a copy of the mirrornet binary nobody may
// run. It skips the test unless it runs as root (only root can drop to
// another user).
func unprivileged(t *testing.T) (*syscall.Credential, string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run commands as another user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	// t.TempDir's parents are 0700: make a directory of our own.
	dir, err := os.MkdirTemp("", "mirrornet-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "mirrornet")
	src, err := os.Open(binPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return cred, dir, bin
}

// runAs runs bin with args as the user cred and returns stdout, stderr and
// the exit code.
func runAs(t *testing.T, cred *syscall.Credential, bin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Env = append(os.Environ(), "HOME="+os.TempDir())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// Permission errors are one line that names what was denied, never
// "io: read/write on closed pipe", and they leave the node as it was: a
// publish (as a user without root's powers) of a directory with a file it
// may not read, and a publish by a user who may not use the node's admin
// socket.
func TestE2EPublishPermissionErrors(t *testing.T) {
	cred, dir, bin := unprivileged(t)

	// A node run by nobody, and an app with a file only root may read.
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatal(err)
	}
	startNodeAs(t, bin, cred, data)
	app := filepath.Join(dir, "app")
	if err := os.Mkdir(app, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(app, "index.html"), []byte("<h1>app</h1>"), 0o644)
	os.WriteFile(filepath.Join(app, "big.bin"), seededBytes(9, 3<<20), 0o644) // sorts first: its blocks reach the node
	secret := filepath.Join(app, "secret.txt")
	os.WriteFile(secret, []byte("root only"), 0o600)
	before := blockBytes(t, data)

	_, errOut, code := runAs(t, cred, bin, "publish", "--data", data, app)
	want := "mirrornet: publish: bundle: open " + secret + ": permission denied\n"
	if code != 1 || errOut != want {
		t.Errorf("publish of an unreadable file: exit %d, stderr %q; want exit 1, %q", code, errOut, want)
	}
	if now := blockBytes(t, data); now > before+leftoverSlack {
		t.Errorf("the refused publish left %d bytes of blocks (before: %d)", now, before)
	}
	out, errOut, code := runAs(t, cred, bin, "ls", "--data", data, "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("ls after the refused publish: exit %d, %q %q", code, out, errOut)
	}
	// The node keeps serving: the readable part publishes.
	os.Remove(secret)
	if out, errOut, code := runAs(t, cred, bin, "publish", "--data", data, app); code != 0 || !strings.HasPrefix(out, "bafy") {
		t.Errorf("publish after removing the file: exit %d, %q %q", code, out, errOut)
	}

	// A node run by root: nobody may not use its admin socket, whether the
	// data directory hides it (0700) or only the socket does (0600).
	root := startNode(t)
	for _, mode := range []os.FileMode{0o700, 0o755} {
		if err := os.Chmod(root.data, mode); err != nil {
			t.Fatal(err)
		}
		// The test's temporary directories above DATA are 0700: let
		// nobody through to DATA itself.
		for p := filepath.Dir(root.data); p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
			os.Chmod(p, 0o755)
		}
		for _, args := range [][]string{{"publish", "--data", root.data, filepath.Join(app, "index.html")}, {"ls", "--data", root.data}} {
			_, errOut, code := runAs(t, cred, bin, args...)
			if code != 1 || !strings.Contains(errOut, "permission denied on the admin socket "+filepath.Join(root.data, "admin.sock")) ||
				strings.Contains(errOut, "closed pipe") || strings.Count(errOut, "\n") != 1 {
				t.Errorf("%s as nobody, DATA mode %o: exit %d, %q: want one line about the admin socket", args[0], mode, code, errOut)
			}
		}
	}
	if _, errOut, code := mirrornet(t, "ls", "--data", root.data); code != 0 {
		t.Errorf("root's node stopped answering: %s", errOut)
	}
}
