package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// A real mirror serves the dashboard to browsers and its plain text to
// curl on the same "/", and the dashboard's JSON names itself.
func TestE2EDashboardRoutes(t *testing.T) {
	m := startNode(t)
	mi := m.info(t)
	get := func(path, accept string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", mi.HTTP+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := get("/", "*/*"); !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !strings.Contains(body, mi.PeerID) {
		t.Errorf("curl /: %s %q", resp.Header.Get("Content-Type"), body)
	}
	if resp, body := get("/", "text/html,application/xhtml+xml,*/*;q=0.8"); !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "<!doctype html>") {
		t.Errorf("browser /: %s", resp.Header.Get("Content-Type"))
	}
	resp, body := get("/api/v1/dashboard", "")
	var snap struct {
		Self struct {
			PeerID string `json:"peer_id"`
		} `json:"self"`
		Mirrors []struct {
			PeerID string `json:"peer_id"`
			State  string `json:"state"`
		} `json:"mirrors"`
	}
	if err := json.Unmarshal([]byte(body), &snap); err != nil || resp.StatusCode != 200 || snap.Self.PeerID != mi.PeerID {
		t.Fatalf("dashboard JSON: %d %v %q", resp.StatusCode, err, body)
	}
	// The backup page of an app this mirror knows nothing of is a 404 page.
	unknown := "app-bo3yt5ha7jqo6xfbhtc3z4rw6v4m3j2jmo7aoaoamtgtpvqfhwuuq"
	if resp, body := get("/app/"+unknown+"/backup", "text/html"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "Unknown app") {
		t.Errorf("backup page of an unknown app: %d %q", resp.StatusCode, body)
	}

	// Once the mirror knows a release of an app, the app's backup page
	// holds the one-line commands with its ID and this mirror's address,
	// and the dashboard lists the app.
	key := filepath.Join(t.TempDir(), "k.key")
	if _, errOut, code := mirrornet(t, "keygen", key); code != 0 {
		t.Fatalf("keygen: %s", errOut)
	}
	out, errOut, code := mirrornet(t, "release", writeSite(t, "v1"), "--data", m.data, "--app", "demo", "--version", "1", "--key", key, "--json")
	if code != 0 {
		t.Fatalf("release: exit %d: %s", code, errOut)
	}
	var rel struct{ App string }
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatal(err)
	}
	resp, body = get("/app/"+rel.App+"/backup?public-url=https%3A%2F%2Fbackup.example.net", "text/html")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("backup page: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{"docker run", "mirrornet service install --follow " + rel.App, "#cloud-config", mi.PeerID,
		"MIRRORNET_FOLLOW=" + rel.App, "https://backup.example.net", "/badge/peer/"} {
		if !strings.Contains(body, want) {
			t.Errorf("backup page lacks %q", want)
		}
	}
	_, body = get("/api/v1/dashboard", "")
	if !strings.Contains(body, rel.App) {
		t.Errorf("dashboard JSON does not list the app: %s", body)
	}
}
