// The dashboard's only script. Every string it shows comes from strangers
// (peer IDs, labels, app and file names): it sets text, never markup.
'use strict';
(function () {
  const API = '/api/v1/dashboard';
  const REFRESH_MS = 5000;
  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function pill(text) {
    return el('span', text || '-', 'pill ' + String(text || '').replace(/[^a-z]/g, ''));
  }
  function table(headers, rows, emptyText) {
    if (!rows.length) return el('p', emptyText, 'empty');
    const t = el('table');
    const hr = el('tr');
    headers.forEach((h) => hr.appendChild(el('th', h)));
    t.appendChild(el('thead')).appendChild(hr);
    const tb = t.appendChild(el('tbody'));
    rows.forEach((cells) => {
      const tr = tb.appendChild(el('tr'));
      cells.forEach((c) => {
        const td = tr.appendChild(el('td'));
        if (c instanceof Node) td.appendChild(c);
        else { td.textContent = c === undefined || c === null ? '' : String(c); }
      });
    });
    return t;
  }
  function mono(text) { return el('span', text, 'mono'); }
  function ago(iso) {
    const t = Date.parse(iso);
    if (!t) return '';
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    return s < 120 ? s + ' s ago' : Math.round(s / 60) + ' min ago';
  }
  function replace(id, node) {
    const box = $(id);
    box.replaceChildren(node);
  }

  function render(s) {
    $('self').textContent = s.self.peer_id;
    $('meta').textContent = 'version ' + s.self.version + ' · profile ' + s.self.profile + ' · ' + s.self.peers_connected + ' peers connected';
    $('updated').textContent = new Date(s.generated).toLocaleTimeString();

    // Mirrors, grouped by failure domain, with counts by state.
    const counts = {};
    s.mirrors.forEach((m) => { counts[m.state] = (counts[m.state] || 0) + 1; });
    const c = $('mirror-counts');
    c.replaceChildren();
    ['alive', 'suspect', 'dead', 'left'].forEach((st) => {
      const span = c.appendChild(el('span'));
      span.appendChild(pill(st));
      span.appendChild(document.createTextNode(' ' + (counts[st] || 0)));
    });
    const byDomain = new Map();
    s.mirrors.forEach((m) => {
      const d = m.domain || 'domain not yet observed';
      if (!byDomain.has(d)) byDomain.set(d, []);
      byDomain.get(d).push(m);
    });
    const box = document.createDocumentFragment();
    [...byDomain.keys()].sort().forEach((d) => {
      box.appendChild(el('div', d, 'domain'));
      box.appendChild(table(['peer', 'state', 'evidence', 'region', 'bundles', 'version', 'last seen', 'http'],
        byDomain.get(d).map((m) => [mono(m.peer_id), pill(m.state), pill(m.evidence), m.region || '', m.bundles, m.version || '', ago(m.last_seen), mono(m.http || '')]),
        ''));
    });
    if (!s.mirrors.length) box.appendChild(el('p', 'No mirrors known yet.', 'empty'));
    replace('mirrors', box);

    replace('apps', table(['app', 'name', 'version', 'status', 'integrity', 'holders', 'effective redundancy', 'bundle'],
      s.apps.map((a) => [mono(a.app), a.name, a.version, pill(a.status), pill(a.integrity), a.holders, a.effective_redundancy, mono(a.cid)]),
      'No app releases known yet.'));
    replace('bundles', table(['bundle', 'apps', 'holders', 'effective redundancy', 'held here'],
      s.bundles.map((b) => [mono(b.cid), (b.apps || []).join(', '), b.holders, b.effective_redundancy, b.held_here ? 'yes' : 'no']),
      'No bundles known yet.'));
    replace('probes', table(['time', 'observer', 'target', 'outcome', 'latency', 'bundle'],
      s.probes.map((p) => [ago(p.time), mono(p.observer), mono(p.target), pill(p.outcome), p.latency_ms + ' ms', mono(p.bundle)]),
      'No probe results yet.'));
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
  }

  async function refresh() {
    try {
      const r = await fetch(API, { headers: { Accept: 'application/json' }, cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      render(await r.json());
      $('error').textContent = '';
    } catch (e) {
      $('error').textContent = '(refresh failed: ' + e.message + ')';
    }
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
