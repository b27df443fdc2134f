// mirrornet sample dapp: shows where it is served from and the time.
(function () {
  "use strict";
  var host = window.location.host;
  document.getElementById("origin").textContent = window.location.origin;
  // On a subdomain gateway the CID is the first label: CID.ipfs.localhost:8081;
  // on a path gateway it follows /ipfs/.
  var m = /^([a-z0-9]+)\.ipfs\./.exec(host) || /\/ipfs\/([a-zA-Z0-9]+)/.exec(window.location.pathname);
  document.getElementById("cid").textContent = m ? m[1] : "(unknown)";
  function tick() {
    document.getElementById("time").textContent = new Date().toLocaleString();
  }
  tick();
  setInterval(tick, 1000);
})();
