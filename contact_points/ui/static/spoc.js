// spoc — the officers' pages: time left ticks down, and the queue updates itself when new work arrives.
// Served by spoc itself (no external scripts); the pages work without it.
(function () {
  "use strict";

  function describe(ms) {
    var overdue = ms < 0, s = Math.floor(Math.abs(ms) / 1000);
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    var text = d ? d + " d " + h + " h" : h ? h + " h " + m + " min" : m + " min";
    return overdue ? "overdue by " + text : text;
  }

  function tick(root) {
    var now = Date.now();
    (root || document).querySelectorAll("[data-deadline]").forEach(function (el) {
      if (el.dataset.paused) { return; }
      var left = Date.parse(el.dataset.deadline) - now;
      el.textContent = describe(left);
      var row = el.closest("tr");
      if (row) { row.classList.toggle("overdue", left < 0); }
    });
  }

  function poll(live) {
    var url = live.dataset.poll;
    var status = document.getElementById("live-status");
    fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (response) {
      if (response.status === 401) { window.location.assign("/ui/login"); return null; }
      if (!response.ok) { return null; }
      var version = response.headers.get("X-Queue-Version");
      return response.text().then(function (html) {
        if (!version || version === live.dataset.version) { return; }
        var focused = document.activeElement;
        var keep = focused && live.contains(focused) ? focused.getAttribute("href") || focused.getAttribute("aria-label") : null;
        live.innerHTML = html;
        live.dataset.version = version;
        tick(live);
        if (keep) {
          var again = live.querySelector('[href="' + keep + '"], [aria-label="' + keep + '"]');
          if (again) { again.focus(); }
        }
        if (status) { status.textContent = "Updated at " + new Date().toLocaleTimeString() + ": new or changed work."; }
      });
    }).catch(function () { /* offline for a moment: try again at the next turn */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick(document);
    window.setInterval(function () { tick(document); }, 30000);
    var live = document.getElementById("queue-live");
    if (live && window.fetch) {
      var every = parseInt(live.dataset.every || "5000", 10);
      window.setInterval(function () { if (!document.hidden) { poll(live); } }, every);
    }
  });
})();
