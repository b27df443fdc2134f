// The pages the worker writes itself: the status page at /.mirrornet/ and
// the error page shown instead of an app no mirror could deliver.

function esc (s) {
  return String(s).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]))
}

const style = `<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{font-size:1.4rem}table{border-collapse:collapse;width:100%;font-size:.9rem}
td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
code{font-size:.85rem;word-break:break-all}td:first-child code{white-space:nowrap;word-break:normal}.bad{color:#a00}.ok{color:#070}
</style>`

export function statusPage (s) {
  const rows = s.mirrors.map(m => `<tr class="mirror" data-url="${esc(m.url)}">
<td><code>${esc(m.url)}</code></td><td><code>${esc(m.peer.slice(-12))}</code></td><td>${esc(m.version)}</td>
<td>${m.served_blocks}</td><td>${m.served_bytes}</td><td>${m.avg_ms}</td>
<td class="${m.dropped ? 'bad' : 'ok'}">${m.dropped ? 'dropped: ' + esc(m.dropped) : (m.usable ? 'usable' : 'not usable')}</td></tr>`).join('\n')
  const srcs = s.sources.map(x => `<tr><td><code>${esc(x.url)}</code></td><td>${x.statements}</td><td>${x.rejected}</td><td>${esc(x.error)}</td></tr>`).join('\n')
  const events = s.events.map(e => `<li><code>${esc(e.at)}</code> ${esc(e.what)}</li>`).join('\n')
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mirrornet: status of this app</title>${style}</head><body>
<h1>mirrornet status for this app</h1>
<dl>
<dt>Verified CID</dt><dd><code id="root">${esc(s.root)}</code> ${s.verified ? '<span class="ok">(bytes verified)</span>' : '(nothing served yet)'}</dd>
<dt>Release</dt><dd id="release">${s.app ? `app <code>${esc(s.app)}</code>, version ${esc(s.release_version)}${s.release_version ? ` <span class="ok">(signed by ${s.release_signers.length} maintainer(s), threshold ${esc(s.release_threshold)}, verified in this browser)</span>` : ''}${s.release_expired ? ' <span class="bad">(expired: no newer release known)</span>' : ''}${s.release_latest > s.release_version ? ` (version ${esc(s.release_latest)} verified, not yet held by a mirror)` : ''}${s.releases_rejected ? ` <span class="bad">${esc(s.releases_rejected)} release record(s) refused</span>` : ''}` : 'content-addressed origin (no release record)'}</dd>
<dt>Origin</dt><dd><code>${esc(s.origin)}</code></dd>
<dt>Worker started</dt><dd>${esc(s.worker_started)}</dd>
${s.last_error ? `<dt>Last error</dt><dd class="bad">${esc(s.last_error)}</dd>` : ''}
</dl>
<h2>Mirrors</h2>
<table id="mirrors"><tr><th>URL</th><th>peer</th><th>version</th><th>blocks served</th><th>bytes</th><th>avg ms</th><th>state</th></tr>
${rows}</table>
<h2>Statement sources</h2>
<table><tr><th>URL</th><th>statements</th><th>rejected</th><th>error</th></tr>${srcs}</table>
<h2>Events</h2><ul>${events}</ul>
<p><a href="/.mirrornet/?format=json">JSON</a></p>
</body></html>`
}

export function errorPage ({ origin, root, error, tried }) {
  const rows = tried.map(t => `<li><code>${esc(t.url)}</code>: ${esc(t.reason)}</li>`).join('\n')
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mirrornet: app unavailable</title>${style}</head><body>
<h1 id="mirrornet-error">This app could not be loaded from any mirror</h1>
<p>No mirror delivered bytes that match the app's content ID, so nothing of it is shown
(mirrornet never shows unverified or partial content). Your data in this browser is untouched;
reload when a mirror is back.</p>
<dl><dt>App CID</dt><dd><code>${esc(root)}</code></dd><dt>Origin</dt><dd><code>${esc(origin)}</code></dd>
<dt>Error</dt><dd class="bad">${esc(error)}</dd></dl>
<h2>Mirrors tried</h2><ul id="tried">${rows || '<li>none known</li>'}</ul>
<p><a href="/.mirrornet/">Status</a></p>
</body></html>`
}
