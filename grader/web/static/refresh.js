// A page of work in progress (a regrade preview being graded) reloads itself every few seconds.
setTimeout(function () { window.location.reload(); }, 3000);
