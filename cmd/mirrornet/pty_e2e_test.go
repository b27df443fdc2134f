package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair: what a command writes to the
// second file reaches the first, and the command sees a terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m, s
}

// onTerminal runs the binary with its stderr on a pseudo-terminal and
// returns stdout, what the terminal received, and the exit code.
func onTerminal(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	master, slave := openPTY(t)
	defer master.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, slave
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close() // the child holds it now: the master reads EOF (EIO) once it exits
	term := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO when the last slave closes
		term <- b
	}()
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), string(<-term), code
}

// On a terminal, publish, follow --wait and get draw a progress bar with
// the total, the percentage, the rate and the time left (its last state,
// 100%, is always drawn before the line is cleared); with --json they draw
// nothing, whatever stderr is. stdout carries only the result either way.
func TestE2EProgressOnTerminal(t *testing.T) {
	origin := startNode(t)
	src := randomFile(t, 11, 5<<20)
	// The last draw: percentage, done/total and rate.
	done := regexp.MustCompile(`100% \|[^|]*\| \(5\.2/5\.2 MB, [0-9.]+ [kMG]?B/s\)`)
	// A draw before the end also shows [elapsed:time left].
	eta := regexp.MustCompile(`[0-9]+% \|[^|]*\| \([^)]*\) \[[0-9a-z.]+:[0-9a-z.]+\]`)

	out, term, code := onTerminal(t, "publish", "--data", origin.data, src)
	if code != 0 || !strings.HasPrefix(out, "bafk") && !strings.HasPrefix(out, "bafy") {
		t.Fatalf("publish on a terminal: exit %d, stdout %q, terminal %q", code, out, term)
	}
	cid := strings.TrimSpace(out)
	if !strings.Contains(term, "publishing") || !done.MatchString(term) || !eta.MatchString(term) {
		t.Errorf("publish drew no bar with total, %%, rate and ETA: %q", term)
	}

	follower := startNode(t, "--bootstrap", origin.info(t).Addrs[0])
	out, term, code = onTerminal(t, "follow", "--wait", "--data", follower.data, cid)
	if code != 0 || !strings.HasPrefix(out, "held "+cid) {
		t.Fatalf("follow --wait on a terminal: exit %d, stdout %q, terminal %q", code, out, term)
	}
	// (It may see the bundle held at its first look: then the only draw
	// is the last one, without time left.)
	if !strings.Contains(term, "fetching") || !done.MatchString(term) {
		t.Errorf("follow --wait drew no bar with total, %%, and rate: %q", term)
	}

	dest := t.TempDir() + "/out.bin"
	out, term, code = onTerminal(t, "get", cid, "-o", dest, "--bootstrap", follower.info(t).HTTP)
	if code != 0 {
		t.Fatalf("get on a terminal: exit %d, stdout %q, terminal %q", code, out, term)
	}
	if !strings.Contains(term, "getting") || !done.MatchString(term) || !eta.MatchString(term) {
		t.Errorf("get drew no bar with total, %%, rate and ETA: %q", term)
	}

	// --json: nothing on the terminal.
	_, term, code = onTerminal(t, "publish", "--json", "--data", origin.data, randomFile(t, 12, 3<<20))
	if code != 0 || strings.TrimSpace(term) != "" {
		t.Errorf("publish --json on a terminal: exit %d, drew %q", code, term)
	}
}
