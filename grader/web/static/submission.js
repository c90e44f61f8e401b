// A submission page that is not finished yet asks for its state every 1.5 s. When grading is done it
// fetches the page again and swaps in its main part: the result is still rendered (and escaped) by the
// server like every other page, and a screen reader hears "Graded: ..." instead of a whole new page.
(function () {
  "use strict";
  var box = document.getElementById("live-status");
  if (!box || !box.dataset.url) return;
  var badge = document.getElementById("status-badge");
  var note = document.getElementById("status-note");
  var announce = document.getElementById("announce");
  var shown = box.dataset.status;
  function say(text) { if (announce) announce.textContent = text; }
  function showResult() {
    fetch(window.location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        var main = document.querySelector("main");
        if (!fresh || !main) throw new Error("no main");
        main.replaceWith(fresh);
        var score = fresh.querySelector(".score");
        var status = fresh.querySelector("#status-badge");
        say("Grading finished: " + (status ? status.textContent : "done") + (score ? ", " + score.textContent : "") + ".");
      })
      .catch(function () { window.location.reload(); });
  }
  function poll() {
    fetch(box.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (s) {
        if (s.done) { showResult(); return; }
        if (s.status !== shown) { shown = s.status; badge.textContent = s.status; badge.className = "badge " + s.status; }
        note.textContent = s.note || "";
        setTimeout(poll, 1500);
      })
      .catch(function () { note.textContent = "Lost contact with the server; retrying ..."; setTimeout(poll, 4000); });
  }
  setTimeout(poll, 1000);
})();
