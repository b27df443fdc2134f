package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	blocks "github.com/ipfs/go-block-format"

	"github.com/mirrornet/mirrornet/internal/bundle"
)

// The compose file and the testnet are one topology; this test keeps the
// compose file honest on a machine without Docker: every service's command
// and environment must be accepted by this binary, and the shape (five
// mirrors, ports 8081..8085, the publisher on mirror-0's volume, no peer
// IDs, the app CID) must hold.

const composePath = "../../docker-compose.yml"

func loadCompose(t *testing.T) (*types.Project, []byte) {
	t.Helper()
	raw, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(composePath)
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []types.ConfigFile{{Filename: abs, Content: raw}},
		Environment: types.Mapping{},
	}, loader.WithProfiles([]string{"*"}), func(o *loader.Options) { o.SetProjectName("mirrornet", true) })
	if err != nil {
		t.Fatalf("compose-go rejects docker-compose.yml: %v", err)
	}
	return project, raw
}

// serviceEnv is a service's environment with every path under one of its
// volume targets moved to a fresh temporary directory, and its command
// rewritten the same way.
type serviceEnv struct {
	args []string
	env  map[string]string
	vols map[string]string // target → temp dir
}

func rewriteService(t *testing.T, svc types.ServiceConfig) serviceEnv {
	t.Helper()
	se := serviceEnv{env: map[string]string{}, vols: map[string]string{}}
	for _, v := range svc.Volumes {
		se.vols[v.Target] = t.TempDir()
	}
	move := func(s string) string {
		for target, dir := range se.vols {
			if s == target || strings.HasPrefix(s, target+"/") {
				return dir + strings.TrimPrefix(s, target)
			}
		}
		return s
	}
	for _, a := range svc.Command {
		se.args = append(se.args, move(a))
	}
	for k, v := range svc.Environment {
		if v == nil {
			t.Fatalf("%s: environment %s has no value (would come from the host)", svc.Name, k)
		}
		se.env[k] = move(*v)
	}
	return se
}

func (se serviceEnv) cmdEnv(stderr io.Writer) *cmdEnv {
	return &cmdEnv{getenv: func(k string) string { return se.env[k] }, stdout: io.Discard, stderr: stderr}
}

// runReal runs the built binary with a service's command and environment
// only (plus PATH and a throwaway HOME), with every mirror hostname
// pointed at a closed loopback port.
func runReal(t *testing.T, args []string, env map[string]string) (string, int) {
	t.Helper()
	hosts := regexp.MustCompile(`(mirror-\d+|127\.0\.0\.1):8080`)
	var fixed []string
	for _, a := range args {
		fixed = append(fixed, hosts.ReplaceAllString(a, "127.0.0.1:1"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, fixed...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+hosts.ReplaceAllString(v, "127.0.0.1:1"))
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stderr.String(), code
}

func sampleDappCID(t *testing.T) string {
	t.Helper()
	res, err := bundle.Import(context.Background(), "../../examples/sample-dapp/site", func(blocks.Block) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Root.String()
}

func TestComposeFileIsAcceptedByTheBinary(t *testing.T) {
	project, raw := loadCompose(t)
	appCID := sampleDappCID(t)
	if got, _ := project.Extensions["x-app-cid"].(string); got != appCID {
		t.Fatalf("x-app-cid is %q but examples/sample-dapp/site imports to %s: update docker-compose.yml", got, appCID)
	}

	// No peer IDs anywhere: discovery must need no manual step.
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`12D3KooW[1-9A-HJ-NP-Za-km-z]+`),
		regexp.MustCompile(`Qm[1-9A-HJ-NP-Za-km-z]{44}`),
		regexp.MustCompile(`/p2p/`),
	} {
		if m := re.Find(raw); m != nil {
			t.Errorf("docker-compose.yml mentions a peer ID: %q", m)
		}
	}

	var names []string
	for name := range project.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"light-client", "mirror-0", "mirror-1", "mirror-2", "mirror-3", "mirror-4", "publisher"}
	if !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}

	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("mirror-%d", i)
		t.Run(name, func(t *testing.T) {
			svc := project.Services[name]
			se := rewriteService(t, svc)
			if len(svc.Entrypoint) > 0 || len(se.args) == 0 || se.args[0] != "node" {
				t.Fatalf("entrypoint %q command %q: want the image's mirrornet entrypoint with command node", svc.Entrypoint, se.args)
			}
			var stderr bytes.Buffer
			cfg, _, err := nodeConfig(se.cmdEnv(&stderr), se.args[1:])
			if err != nil {
				t.Fatalf("mirrornet node rejects the service: %v", err)
			}
			if cfg.DataDir != se.vols["/data"] {
				t.Errorf("data dir %q is not the /data volume", cfg.DataDir)
			}
			if cfg.HTTPAddr != "0.0.0.0:8080" {
				t.Errorf("http %q, want 0.0.0.0:8080 (reachable through the published port)", cfg.HTTPAddr)
			}
			if !cfg.MDNS {
				t.Errorf("mdns off: want mDNS discovery on the compose network")
			}
			// Bootstrap only by service URL: nobody pastes peer IDs.
			for _, b := range cfg.Bootstrap {
				if !strings.HasPrefix(b, "http://mirror-") {
					t.Errorf("bootstrap %q: want only compose service URLs (http://mirror-N:8080), no peer IDs", b)
				}
			}
			if name != "mirror-0" && len(cfg.Bootstrap) == 0 {
				t.Errorf("%s has no bootstrap: it depends on multicast alone", name)
			}
			if cfg.PublicURL != "http://"+name+":8080" {
				t.Errorf("public-url %q, want http://%s:8080", cfg.PublicURL, name)
			}
			for _, subnet := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} {
				if !slices.Contains(cfg.ColocationWhitelist, subnet) {
					t.Errorf("colocation whitelist %v lacks compose subnet %s", cfg.ColocationWhitelist, subnet)
				}
			}
			wantFollow := []string{appCID}
			if i == 0 {
				wantFollow = nil
			}
			if !slices.Equal(cfg.Follow, wantFollow) {
				t.Errorf("follow %v, want %v", cfg.Follow, wantFollow)
			}
			if len(svc.Ports) != 1 || svc.Ports[0].Target != 8080 || svc.Ports[0].Published != fmt.Sprint(8081+i) {
				t.Errorf("ports %+v, want %d:8080", svc.Ports, 8081+i)
			}
			if len(svc.Volumes) != 1 || svc.Volumes[0].Source != name+"-data" || svc.Volumes[0].Target != "/data" {
				t.Errorf("volumes %+v, want %s-data:/data", svc.Volumes, name)
			}
			if svc.Image != "mirrornet:dev" || svc.Build == nil {
				t.Errorf("image %q build %v: want mirrornet:dev built from the Dockerfile", svc.Image, svc.Build)
			}
		})
	}

	t.Run("publisher", func(t *testing.T) {
		svc := project.Services["publisher"]
		m0 := project.Services["mirror-0"]
		data := svc.Environment["MIRRORNET_DATA"]
		if len(svc.Volumes) != 1 || svc.Volumes[0].Source != m0.Volumes[0].Source || data == nil || svc.Volumes[0].Target != *data {
			t.Fatalf("publisher volumes %+v: want mirror-0's data volume at its MIRRORNET_DATA (the admin socket lives there)", svc.Volumes)
		}
		if _, ok := svc.DependsOn["mirror-0"]; !ok || svc.DependsOn["mirror-0"].Condition != types.ServiceConditionHealthy {
			t.Errorf("publisher depends_on %+v: want mirror-0 healthy", svc.DependsOn)
		}
		se := rewriteService(t, svc)
		if len(se.args) != 2 || se.args[0] != "publish" {
			t.Fatalf("command %q, want publish PATH", se.args)
		}
		if !strings.Contains(readDockerfile(t), "COPY examples/sample-dapp/site "+svc.Command[1]+"\n") {
			t.Errorf("the Dockerfile does not copy examples/sample-dapp/site to %s", svc.Command[1])
		}
		// No node runs on the temporary data dir: publish must get past flag
		// parsing and fail for that reason (exit 1), not a usage error (2).
		stderr, code := runReal(t, se.args, se.env)
		if code != 1 || !strings.Contains(stderr, "no running node") {
			t.Fatalf("publish exit %d: %s; want exit 1, no running node", code, stderr)
		}
	})

	t.Run("light-client", func(t *testing.T) {
		svc := project.Services["light-client"]
		se := rewriteService(t, svc)
		if len(se.args) < 2 || se.args[0] != "get" || se.args[1] != appCID {
			t.Fatalf("command %q, want get %s ...", se.args, appCID)
		}
		if _, ok := svc.DependsOn["mirror-0"]; ok {
			t.Error("light-client depends on mirror-0: `compose run` would restart the origin")
		}
		boot := se.env["MIRRORNET_BOOTSTRAP"]
		for i := 1; i < 5; i++ {
			if !strings.Contains(boot, fmt.Sprintf("http://mirror-%d:8080", i)) {
				t.Errorf("bootstrap %q lacks mirror-%d", boot, i)
			}
		}
		if strings.Contains(boot, "mirror-0") {
			t.Errorf("bootstrap %q names the origin", boot)
		}
		// Every mirror is a closed port here: get must parse its flags and
		// fail because no mirror delivers (exit 1), not with a usage error.
		stderr, code := runReal(t, se.args, se.env)
		if code != 1 || !strings.Contains(stderr, "127.0.0.1:1") {
			t.Fatalf("get exit %d: %s; want exit 1 naming the unreachable mirrors", code, stderr)
		}
	})
}

func readDockerfile(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// dockerfileInstructions joins continuation lines and drops comments.
func dockerfileInstructions(src string) []string {
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(src))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

func TestDockerfile(t *testing.T) {
	src := readDockerfile(t)
	ins := dockerfileInstructions(src)
	var final []string // instructions of the last stage
	for _, in := range ins {
		if strings.HasPrefix(in, "FROM ") {
			final = nil
		}
		final = append(final, in)
	}
	has := func(list []string, prefix string) (string, bool) {
		for _, in := range list {
			if strings.HasPrefix(in, prefix) {
				return in, true
			}
		}
		return "", false
	}
	if _, ok := has(ins, "FROM golang:1.26 AS build"); !ok {
		t.Error("no golang:1.26 build stage")
	}
	if in, ok := has(ins, "ENV CGO_ENABLED=0"); !ok {
		t.Errorf("build is not static (CGO_ENABLED=0): %q", in)
	}
	if in, ok := has(final, "USER "); !ok || strings.Contains(in, "root") && !strings.Contains(in, "nonroot") || strings.HasPrefix(in, "USER 0") {
		t.Errorf("final stage USER %q: want a non-root user", in)
	}
	if in, ok := has(final, "VOLUME "); !ok || !strings.Contains(in, "/data") {
		t.Errorf("final stage VOLUME %q: want /data", in)
	}
	entry, _ := has(final, "ENTRYPOINT ")
	var entrypoint []string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(entry, "ENTRYPOINT ")), &entrypoint); err != nil || !slices.Equal(entrypoint, []string{"mirrornet"}) {
		t.Fatalf("ENTRYPOINT %q: want [\"mirrornet\"] (the compose commands rely on it)", entry)
	}

	// The image's ENV with its default CMD must be a valid node config.
	env := map[string]string{}
	envRe := regexp.MustCompile(`(MIRRORNET_[A-Z_]+)=(\S+)`)
	for _, in := range final {
		if strings.HasPrefix(in, "ENV ") {
			for _, m := range envRe.FindAllStringSubmatch(in, -1) {
				env[m[1]] = m[2]
			}
		}
	}
	cmdLine, _ := has(final, "CMD ")
	var defCmd []string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(cmdLine, "CMD ")), &defCmd); err != nil || len(defCmd) == 0 || defCmd[0] != "node" {
		t.Fatalf("CMD %q: want [\"node\"]", cmdLine)
	}
	se := serviceEnv{env: env}
	cfg, _, err := nodeConfig(se.cmdEnv(io.Discard), defCmd[1:])
	if err != nil {
		t.Fatalf("the image's default command and ENV are rejected: %v", err)
	}
	if cfg.DataDir != "/data" || cfg.HTTPAddr != "0.0.0.0:8080" {
		t.Errorf("image default node: data %q http %q", cfg.DataDir, cfg.HTTPAddr)
	}

	// The HEALTHCHECK command parses (exit 1: no node answers; not 2).
	hc, ok := has(final, "HEALTHCHECK ")
	if !ok {
		t.Fatal("no HEALTHCHECK")
	}
	var check []string
	if i := strings.Index(hc, "CMD ["); i < 0 || json.Unmarshal([]byte(hc[i+4:]), &check) != nil || len(check) < 2 || check[0] != "mirrornet" {
		t.Fatalf("HEALTHCHECK %q: want CMD [\"mirrornet\", ...]", hc)
	}
	stderr, code := runReal(t, check[1:], env)
	if code != 1 || !strings.Contains(stderr, "no node answers") {
		t.Fatalf("healthcheck %q: exit %d %s; want exit 1, no node answers", check, code, stderr)
	}
}
