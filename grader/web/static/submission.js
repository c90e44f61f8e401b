// A submission page that is not finished yet asks for its state every 1.5 s; when grading is done it
// reloads, so the result is rendered (and escaped) by the server like every other page.
(function () {
  "use strict";
  var box = document.getElementById("live-status");
  if (!box || !box.dataset.url) return;
  var badge = document.getElementById("status-badge");
  var note = document.getElementById("status-note");
  var shown = box.dataset.status;
  function poll() {
    fetch(box.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (s) {
        if (s.done) { window.location.reload(); return; }
        if (s.status !== shown) { shown = s.status; badge.textContent = s.status; badge.className = "badge " + s.status; }
        note.textContent = s.note || "";
        setTimeout(poll, 1500);
      })
      .catch(function () { note.textContent = "Lost contact with the server; retrying ..."; setTimeout(poll, 4000); });
  }
  setTimeout(poll, 1000);
})();
