package backup

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"testing"

	"github.com/mirrornet/mirrornet/protocol"
)

var (
	testApp  = protocol.DeriveAppID("dapp", protocol.MaintainerSet{Threshold: 1, Keys: []string{"12D3KooWSUv8bhHRsKEPAfH3qqkdLSao9h33AmcNXWf6M2JYejz4"}})
	otherApp = protocol.DeriveAppID("other", protocol.MaintainerSet{Threshold: 1, Keys: []string{"12D3KooWSUv8bhHRsKEPAfH3qqkdLSao9h33AmcNXWf6M2JYejz4"}})
)

const (
	testBoot = "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWSUv8bhHRsKEPAfH3qqkdLSao9h33AmcNXWf6M2JYejz4"
)

type fakeSource struct{ app string }

func (f fakeSource) LookupApp(app string) (AppInfo, bool) {
	if app != f.app {
		return AppInfo{}, false
	}
	return AppInfo{App: app, Name: `<script>alert(1)</script> dapp`, Version: 4, CID: "bafyexample", Holders: 2}, true
}
func (fakeSource) Bootstrap() []string { return []string{testBoot} }
func (fakeSource) URL() string         { return "http://192.0.2.7:8080" }

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           "plain",
		"MIRRORNET_X=a/b": "MIRRORNET_X=a/b",
		"it's":            `'it'\''s'`,
		"$(reboot)":       "'$(reboot)'",
		"":                "''",
		"a b":             "'a b'",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
	// A real shell gives back exactly what was quoted.
	if sh, err := exec.LookPath("sh"); err == nil {
		for _, s := range []string{"it's $(x) `y` \\ \"z\"", "http://h:1/p"} {
			out, err := exec.Command(sh, "-c", "printf %s "+Quote(s)).Output()
			if err != nil || string(out) != s {
				t.Errorf("sh read %q back as %q (%v)", s, out, err)
			}
		}
	}
}

func TestCommandsCarryAppBootstrapAndURL(t *testing.T) {
	p := Params{App: testApp, Bootstrap: []string{testBoot}, PublicURL: "https://mirror.example.org"}
	for name, s := range map[string]string{"docker": p.Docker(), "systemd": p.Systemd(), "cloud-init": p.CloudInit()} {
		for _, want := range []string{testApp, testBoot, "https://mirror.example.org"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s line lacks %q: %s", name, want, s)
			}
		}
		if name != "cloud-init" && strings.Contains(s, "\n") {
			t.Errorf("%s is not one line", name)
		}
	}
	if !strings.Contains(p.Docker(), "docker build -t mirrornet "+Repo) || !strings.Contains(p.Docker(), "-v mirrornet:/data") {
		t.Errorf("docker line: %s", p.Docker())
	}
	if !strings.Contains(p.Systemd(), "mirrornet service install --follow "+testApp) {
		t.Errorf("systemd line: %s", p.Systemd())
	}
	if !strings.HasPrefix(p.CloudInit(), "#cloud-config\n") {
		t.Error("cloud-init file lacks its header")
	}
	// No public URL: the flag is left out (the mirror announces what its
	// peers observe).
	if s := (Params{App: testApp}).Docker(); strings.Contains(s, "PUBLIC_URL") {
		t.Errorf("docker line without a public URL: %s", s)
	}
}

func TestUnit(t *testing.T) {
	u := Unit(UnitConfig{Binary: "/usr/local/bin/mirrornet", DataDir: "/var/lib/mirrornet",
		Env: [][2]string{{"MIRRORNET_FOLLOW", testApp}, {"MIRRORNET_PUBLIC_URL", "http://h:8080/a b"}}})
	for _, want := range []string{
		"ExecStart=/usr/local/bin/mirrornet node\n", "Environment=MIRRORNET_FOLLOW=" + testApp + "\n",
		`Environment="MIRRORNET_PUBLIC_URL=http://h:8080/a b"`, "StateDirectory=mirrornet\n", "KillSignal=SIGTERM\n",
		"DynamicUser=yes\n", "WantedBy=multi-user.target\n", "Environment=MIRRORNET_HTTP=0.0.0.0:8080\n",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string, string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(PathPattern, h)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, rec.Header().Get("Content-Type"), string(b)
}

func TestPage(t *testing.T) {
	h := Handler(fakeSource{app: testApp})
	code, ct, body := get(t, h, "/app/"+testApp+"/backup?public-url="+url.QueryEscape("https://backup.example.net"))
	if code != 200 || !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("status %d, %s", code, ct)
	}
	for _, want := range []string{testApp, testBoot, "MIRRORNET_PUBLIC_URL=https://backup.example.net", "mirrornet service install", "#cloud-config",
		"/badge/peer/YOUR-PEER-ID/backup.svg", "&lt;script&gt;alert(1)&lt;/script&gt; dapp"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("the app's name reached the page as markup")
	}
	// A public URL that is not one is refused, not pasted into commands.
	_, _, body = get(t, h, "/app/"+testApp+"/backup?public-url="+url.QueryEscape("javascript:alert(1)'; rm -rf /"))
	if strings.Contains(body, "rm -rf") && !strings.Contains(body, "&#39;; rm -rf") {
		t.Error("a bad public URL reached the commands")
	}
	if !strings.Contains(body, "public URL must be") || strings.Contains(body, "MIRRORNET_PUBLIC_URL") {
		t.Error("a bad public URL is not reported, or was used")
	}
}

func TestUnknownAppIs404Page(t *testing.T) {
	h := Handler(fakeSource{app: testApp})
	for _, app := range []string{otherApp, "%3Cscript%3Ealert(1)%3C%2Fscript%3E"} {
		code, ct, body := get(t, h, "/app/"+app+"/backup")
		if code != http.StatusNotFound || !strings.HasPrefix(ct, "text/html") || !strings.Contains(body, "Unknown app") {
			t.Errorf("%s: %d %s", app, code, ct)
		}
		if strings.Contains(body, "<script>") {
			t.Errorf("%s: the path reached the 404 page as markup", app)
		}
	}
}
