package dnsupdate_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mirrornet/mirrornet/internal/dnsupdate"
	"github.com/mirrornet/mirrornet/internal/dnsupdate/dnstest"
)

func TestAppendAndDelete(t *testing.T) {
	srv := dnstest.Start(t, "example.test")
	p, err := dnsupdate.New(dnsupdate.Config{Server: srv.Addr, TSIGKey: srv.KeyName, TSIGSecret: srv.Secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	long := strings.Repeat("x", 300) // two TXT strings on the wire
	recs := []libdns.Record{
		libdns.TXT{Name: "_acme-challenge.ipfs", Text: "token-1", TTL: time.Minute},
		libdns.TXT{Name: "_acme-challenge.ipfs", Text: long},
	}
	if _, err := p.AppendRecords(ctx, "example.test.", recs); err != nil {
		t.Fatal(err)
	}
	got := srv.TXT("_acme-challenge.ipfs.example.test.")
	if !slices.Contains(got, "token-1") || !slices.Contains(got, long) {
		t.Fatalf("after append the server holds %q", got)
	}
	if _, err := p.DeleteRecords(ctx, "example.test.", recs[:1]); err != nil {
		t.Fatal(err)
	}
	if got := srv.TXT("_acme-challenge.ipfs.example.test."); slices.Contains(got, "token-1") || !slices.Contains(got, long) {
		t.Fatalf("after deleting one record the server holds %q", got)
	}
	if applied, refused := srv.Updates(); applied != 2 || refused != 0 {
		t.Fatalf("updates applied %d refused %d, want 2 and 0", applied, refused)
	}
}

// A server refuses updates with a wrong secret, with no signature and for
// another zone; each is an error, and nothing changes.
func TestRefused(t *testing.T) {
	srv := dnstest.Start(t, "example.test")
	rec := []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "t"}}
	for _, c := range []struct {
		name string
		cfg  dnsupdate.Config
		zone string
	}{
		{"wrong secret", dnsupdate.Config{Server: srv.Addr, TSIGKey: srv.KeyName, TSIGSecret: base64.StdEncoding.EncodeToString([]byte("not the secret, not at all"))}, "example.test."},
		{"unsigned", dnsupdate.Config{Server: srv.Addr}, "example.test."},
		{"other zone", dnsupdate.Config{Server: srv.Addr, TSIGKey: srv.KeyName, TSIGSecret: srv.Secret}, "other.test."},
	} {
		p, err := dnsupdate.New(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.AppendRecords(context.Background(), c.zone, rec); err == nil {
			t.Errorf("%s: update accepted", c.name)
		}
	}
	if got := srv.TXT("_acme-challenge.example.test."); len(got) != 0 {
		t.Fatalf("refused updates changed the zone: %q", got)
	}
	if applied, _ := srv.Updates(); applied != 0 {
		t.Fatalf("%d updates applied", applied)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"server":"192.0.2.1","tsig_key":"mirror-acme","tsig_secret":"c2VjcmV0"}`, 0o600)
	c, err := dnsupdate.LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "192.0.2.1:53" || c.TSIGKey != "mirror-acme." || c.TSIGAlgorithm != "hmac-sha256" || !slices.Equal(c.Resolvers, []string{"192.0.2.1:53"}) {
		t.Fatalf("defaults not filled: %+v", c)
	}
	for _, bad := range []struct{ name, body, want string }{
		{"readable.json", `{"server":"192.0.2.1"}`, "chmod 600"},
		{"unknown.json", `{"server":"192.0.2.1","zone":"x"}`, "unknown field"},
		{"noserver.json", `{}`, "server is empty"},
		{"alg.json", `{"server":"192.0.2.1","tsig_algorithm":"hmac-md5","tsig_key":"k","tsig_secret":"c2VjcmV0"}`, "tsig_algorithm"},
		{"half.json", `{"server":"192.0.2.1","tsig_key":"k"}`, "go together"},
		{"secret.json", `{"server":"192.0.2.1","tsig_key":"k","tsig_secret":"%%%"}`, "not base64"},
	} {
		mode := os.FileMode(0o600)
		if bad.name == "readable.json" {
			mode = 0o644
		}
		_, err := dnsupdate.LoadConfig(write(bad.name, bad.body, mode))
		if !errors.Is(err, dnsupdate.ErrConfig) || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v; want one line with %q", bad.name, err, bad.want)
		}
	}
}
