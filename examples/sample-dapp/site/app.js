// mirrornet sample dapp: shows where it is served from and the time.
(function () {
  "use strict";
  var host = window.location.host;
  document.getElementById("origin").textContent = window.location.origin;
  // On a subdomain gateway the CID is the first label: CID.ipfs.localhost:8081;
  // on a path gateway it follows /ipfs/.
  var m = /^([a-z0-9]+)\.ipfs\./.exec(host) || /\/ipfs\/([a-zA-Z0-9]+)/.exec(window.location.pathname);
  document.getElementById("cid").textContent = m ? m[1] : "(unknown)";
  // The app's own state lives in this origin's storage: it survives
  // whichever mirror serves the next visit, as long as the origin stays.
  var visits = 0;
  try {
    visits = Number(window.localStorage.getItem("mirrornet-sample-visits") || 0) + 1;
    window.localStorage.setItem("mirrornet-sample-visits", String(visits));
  } catch (e) {
    visits = 0;
  }
  document.getElementById("visits").textContent = visits ? String(visits) : "(storage unavailable)";
  function tick() {
    document.getElementById("time").textContent = new Date().toLocaleString();
  }
  tick();
  setInterval(tick, 1000);
})();
