// While a similarity report is being built, its page asks for the job's progress every 1.5 s and reloads
// when it is finished, so the new report is rendered (and escaped) by the server like every other page.
(function () {
  "use strict";
  var box = document.getElementById("similarity-job");
  if (!box || !box.dataset.url || box.dataset.working !== "true") return;
  var note = document.getElementById("similarity-progress");
  var bar = document.getElementById("similarity-bar");
  function poll() {
    fetch(box.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (s) {
        // Without the query string: its flash ("Building ...") is over.
        if (!s.working) { window.location.replace(window.location.pathname); return; }
        note.textContent = s.status === "queued" ? "Waiting for a worker ..."
          : (s.stage || "starting") + (s.total ? ": " + s.done + " of " + s.total : "") + " ...";
        if (bar && s.total) { bar.value = s.percent; }
        setTimeout(poll, 1500);
      })
      .catch(function () { note.textContent = "Lost contact with the server; retrying ..."; setTimeout(poll, 4000); });
  }
  setTimeout(poll, 1000);
})();
