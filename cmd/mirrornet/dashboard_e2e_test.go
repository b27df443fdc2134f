package main

import (
	"encoding/json"
	"io"
	"net/http"
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
}
