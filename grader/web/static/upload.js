// Upload form: drag and drop or a file input; the format is checked here before any byte is sent,
// and the server's error is shown in the page. Without JavaScript the plain form still works.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var input = form.querySelector("input[type=file]");
  var zone = document.getElementById("dropzone");
  var chosen = document.getElementById("chosen-file");
  var status = document.getElementById("upload-status");
  var button = form.querySelector("button[type=submit]");
  var progress = document.getElementById("upload-progress");
  var formats = (form.dataset.formats || "").split(",").filter(Boolean);
  var maxBytes = parseInt(form.dataset.maxBytes || "0", 10);

  function say(message, kind) {
    status.textContent = message;
    status.className = message ? "flash " + (kind || "error") : "";
  }

  // The first bytes must match the extension, as the server checks (a renamed file is refused).
  function check(file, done) {
    if (!file) return done("Choose a file first.");
    var dot = file.name.lastIndexOf(".");
    var ext = dot >= 0 ? file.name.slice(dot + 1).toLowerCase() : "";
    if (formats.indexOf(ext) < 0) {
      return done(file.name + ": this assignment accepts " + formats.map(function (f) { return "." + f; }).join(" or ") + " files.");
    }
    if (maxBytes && file.size > maxBytes) {
      return done(file.name + " is " + (file.size / 1048576).toFixed(1) + " MiB; the limit is " + (maxBytes / 1048576).toFixed(0) + " MiB.");
    }
    if (file.size === 0) return done(file.name + " is empty.");
    var reader = new FileReader();
    reader.onload = function () {
      var head = new Uint8Array(reader.result);
      if (ext === "zip" && !(head[0] === 0x50 && head[1] === 0x4b)) return done(file.name + " is named .zip but is not a zip archive.");
      if (ext === "ipynb") {
        var text = String.fromCharCode.apply(null, head).replace(/^[\s\uFEFF\xBB\xBF\xEF]+/, "");
        if (text.charAt(0) !== "{") return done(file.name + " is named .ipynb but is not a notebook (JSON).");
      }
      done(null);
    };
    reader.onerror = function () { done("Could not read " + file.name + "."); };
    reader.readAsArrayBuffer(file.slice(0, 64));
  }

  function choose(file) {
    chosen.textContent = file ? "Selected: " + file.name + " (" + Math.ceil(file.size / 1024) + " KiB)" : "";
    check(file, function (error) { say(error || "", "error"); button.disabled = !!error; });
  }

  input.addEventListener("change", function () { choose(input.files[0]); });
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (event) {
    var files = event.dataTransfer && event.dataTransfer.files;
    if (!files || !files.length) return;
    try { input.files = files; } catch (e) { /* old browsers: keep the dropped file below */ }
    form._dropped = files[0];
    choose(files[0]);
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var file = input.files[0] || form._dropped;
    check(file, function (error) {
      if (error) { say(error, "error"); return; }
      var data = new FormData(form);
      data.set("file", file, file.name);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = function (e) { if (e.lengthComputable) { progress.hidden = false; progress.value = e.loaded / e.total; } };
      xhr.onload = function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = {}; }
        if (xhr.status >= 200 && xhr.status < 300 && body.url) { window.location.assign(body.url); return; }
        button.disabled = false; progress.hidden = true;
        say(body.detail || ("The upload failed (HTTP " + xhr.status + ")."), "error");
      };
      xhr.onerror = function () { button.disabled = false; progress.hidden = true; say("The upload failed: no answer from the server.", "error"); };
      button.disabled = true;
      say("Uploading " + file.name + " ...", "ok");
      xhr.send(data);
    });
  });
})();
