package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/node"
)

// TestE2EMDNSFindsMirrorsOnALAN starts two mirrors with no bootstrap peer
// in a network namespace of the test's own, whose loopback interface is
// made multicast-capable: they must find each other by mDNS alone. Needs
// root (skipped otherwise); never touches the machine's real interfaces.
func TestE2EMDNSFindsMirrorsOnALAN(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	ns := fmt.Sprintf("mirrornet-mdns-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "set", "lo", "multicast", "on"},
		{"route", "add", "224.0.0.0/4", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Skipf("ip %v: %v: %s", args, err, out)
		}
	}

	var datas []string
	for i := 0; i < 2; i++ {
		data := t.TempDir()
		datas = append(datas, data)
		cmd := exec.Command("ip", "netns", "exec", ns, binPath, "node", "--data", data,
			"--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0", "--profile", "local",
			"--mdns=true", "--dht=false")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("mirror %d stderr:\n%s", i, lastLines(stderr.String(), 20))
			}
		})
		waitFor(t, 20*time.Second, "node.json", func() (bool, string) {
			_, err := node.ReadInfo(data)
			return err == nil, fmt.Sprint(err)
		})
	}
	info, _ := node.ReadInfo(datas[0])
	other, _ := node.ReadInfo(datas[1])
	waitFor(t, 30*time.Second, "mirrors found each other by mDNS", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, binPath, "status", "--http", info.HTTP, "--json").Output()
		if err != nil {
			return false, err.Error()
		}
		var st node.Status
		json.Unmarshal(out, &st)
		for _, m := range st.Mirrors {
			if m.PeerID == other.PeerID && m.State == "alive" {
				return true, ""
			}
		}
		return false, string(out)
	})

	// A light client on the same LAN, given no bootstrap address at all,
	// finds the mirrors by mDNS and gets the app.
	site := sampleDir(t)
	pubOut, errOut, code := mirrornet(t, "publish", "--data", datas[0], site)
	if code != 0 {
		t.Fatalf("publish: %s", errOut)
	}
	dest := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	get := exec.CommandContext(ctx, "ip", "netns", "exec", ns, binPath, "get", strings.TrimSpace(pubOut), "-o", dest)
	get.Env = append(os.Environ(), "MIRRORNET_BOOTSTRAP=")
	if out, err := get.CombinedOutput(); err != nil {
		t.Fatalf("get with no bootstrap: %v: %s", err, out)
	}
	sameTree(t, site, dest)
}
