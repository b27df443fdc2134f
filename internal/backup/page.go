package backup

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"

	"github.com/mirrornet/mirrornet/protocol"
)

// PathPattern is the route of the page (Go 1.22 mux pattern).
const PathPattern = "GET /app/{app}/backup"

// AppInfo is what the page says about the app.
type AppInfo struct {
	App     string
	Name    string
	Version uint64
	CID     string
	Holders int
}

// Source is what the page needs from the mirror that serves it.
type Source interface {
	// LookupApp reports the app's latest release, or false if this mirror
	// knows no release of it.
	LookupApp(app string) (AppInfo, bool)
	// Bootstrap are this mirror's multiaddrs ending in /p2p/PEER-ID.
	Bootstrap() []string
	// URL is this mirror's public HTTP base URL.
	URL() string
}

type pageData struct {
	AppInfo
	PublicURL, PublicURLError  string
	Docker, Systemd, CloudInit string
	BadgeHTML, BadgeMarkdown   string
	MirrorURL                  string
}

// Handler serves the backup page of each known app and a 404 page for any
// other app ID.
func Handler(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app := r.PathValue("app")
		info, ok := AppInfo{}, false
		if protocol.IsAppID(app) {
			info, ok = src.LookupApp(app)
		}
		if !ok {
			render(w, http.StatusNotFound, notFoundTmpl, struct{ App string }{app})
			return
		}
		d := pageData{AppInfo: info, MirrorURL: strings.TrimSuffix(src.URL(), "/")}
		d.PublicURL = strings.TrimSpace(r.URL.Query().Get("public-url"))
		if err := CheckPublicURL(d.PublicURL); err != nil {
			d.PublicURLError, d.PublicURL = err.Error(), ""
		}
		p := Params{App: info.App, Bootstrap: src.Bootstrap(), PublicURL: d.PublicURL}
		d.Docker, d.Systemd, d.CloudInit = p.Docker(), p.Systemd(), p.CloudInit()
		page := d.MirrorURL + "/app/" + info.App + "/backup"
		badge := d.MirrorURL + "/badge/peer/YOUR-PEER-ID/backup.svg"
		d.BadgeHTML = `<a href="` + template.HTMLEscapeString(page) + `"><img alt="mirrornet backup server" src="` + template.HTMLEscapeString(badge) + `"></a>`
		d.BadgeMarkdown = "[![mirrornet backup server](" + badge + ")](" + page + ")"
		render(w, http.StatusOK, pageTmpl, d)
	})
}

func render(w http.ResponseWriter, code int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		http.Error(w, "backup: render page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

const style = `<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 960px; margin: 0 auto; padding: 1rem 1.5rem; }
pre { background: #8881; padding: .7rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; font-size: 13px; }
code { font-family: ui-monospace, monospace; }
.err { color: #cf222e; }
input[type=url] { width: 24rem; max-width: 100%; }
</style>`

var pageTmpl = template.Must(template.New("backup").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Run a backup server of {{.Name}}</title>` + style + `</head><body>
<h1>Run a backup server of {{.Name}}</h1>
<p>App <code id="app">{{.App}}</code>, version {{.Version}} (<code>{{.CID}}</code>), held by {{.Holders}} mirror(s) now.
A backup server keeps a verified copy and serves it when others are down. Each line below starts one; it joins through this mirror.</p>
<form method="get">
<label>Your server's public URL (optional): <input type="url" name="public-url" value="{{.PublicURL}}" placeholder="http://203.0.113.7:8080"></label>
<button type="submit">Fill in</button>
{{if .PublicURLError}}<p class="err">{{.PublicURLError}}</p>{{end}}
{{if not .PublicURL}}<p>Without it the mirror announces the address its peers observe, which is right for a server with a public IP and open ports.</p>{{end}}
</form>
<h2>Docker</h2>
<pre id="docker">{{.Docker}}</pre>
<h2>systemd</h2>
<pre id="systemd">{{.Systemd}}</pre>
<h2>cloud-init</h2>
<p>Paste as user data when creating a cloud server:</p>
<pre id="cloud-init">{{.CloudInit}}</pre>
<h2>Firewall</h2>
<p>Open TCP and UDP {{"4001"}} (libp2p) and TCP 8080 (HTTP gateway). See docs/OPERATORS.md for disk, upgrades and what is paid.</p>
<h2>The badge</h2>
<p>Once others have verified your server by retrieval (<code>mirrornet status</code> shows your peer ID; the badge turns green when it is verified), embed:</p>
<pre id="badge-html">{{.BadgeHTML}}</pre>
<pre id="badge-markdown">{{.BadgeMarkdown}}</pre>
</body></html>
`))

var notFoundTmpl = template.Must(template.New("404").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unknown app</title>` + style + `</head><body>
<h1>Unknown app</h1>
<p>This mirror knows no release of <code>{{.App}}</code>. Check the app ID, or ask a mirror that follows the app.</p>
</body></html>
`))
