// Grade by question from the keyboard: 1-9 toggle rubric items, c the comment, Enter saves and opens
// the next ungraded submission, j/k the next/previous student. Keys typed in a field stay in it, except
// Escape (leave the field) and Ctrl/Cmd+Enter (save from the comment).
(function () {
  "use strict";
  var form = document.getElementById("grade-form");
  if (!form) return;
  var items = Array.prototype.slice.call(form.querySelectorAll('input[name="items"]'));
  var comment = document.getElementById("comment");
  var adjustment = document.getElementById("adjustment");
  var live = document.getElementById("live-score");
  var saveNext = document.getElementById("save-next");

  function score() {
    var max = parseFloat(form.dataset.points);
    var total = parseFloat(form.dataset.start);
    items.forEach(function (box) { if (box.checked) total += parseFloat(box.dataset.points); });
    total = Math.min(Math.max(total, 0), max);
    var adjust = parseFloat(adjustment.value);
    if (!isNaN(adjust)) total = Math.min(Math.max(total + adjust, 0), max);
    live.textContent = String(Math.round(total * 1000) / 1000);
  }
  items.forEach(function (box) { box.addEventListener("change", score); });
  adjustment.addEventListener("input", score);

  Array.prototype.forEach.call(document.querySelectorAll(".bank-comment"), function (button) {
    button.addEventListener("click", function () {
      comment.value = comment.value ? comment.value.replace(/\s*$/, "") + "\n" + button.dataset.text : button.dataset.text;
      comment.focus();
    });
  });

  function go(id) {
    var link = document.getElementById(id);
    if (link) window.location.href = link.href;
  }

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var typing = target && (target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type === "text"));
    if (typing) {
      if (event.key === "Escape") target.blur();
      else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); saveNext.click(); }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (/^[1-9]$/.test(event.key)) {
      var box = items[parseInt(event.key, 10) - 1];
      if (box) { box.checked = !box.checked; score(); event.preventDefault(); }
    } else if (event.key === "Enter" && !(target && target.tagName === "BUTTON")) {
      event.preventDefault();
      saveNext.click();
    } else if (event.key === "j") {
      go("next-student");
    } else if (event.key === "k") {
      go("prev-student");
    } else if (event.key === "c") {
      event.preventDefault();
      comment.focus();
    }
  });
})();
