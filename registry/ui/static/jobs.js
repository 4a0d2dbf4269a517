// Live progress for the jobs page: poll /ui/jobs.json once a second while a job is queued or
// running, and update the rows in place. Plain DOM, no build step; text only (never innerHTML).
(function () {
  "use strict";
  var table = document.getElementById("jobs");
  if (!table || !table.dataset.live) { return; }
  var ACTIVE = { queued: true, running: true };
  function update(jobs) {
    var live = false;
    jobs.forEach(function (job) {
      var row = table.querySelector('tr[data-job="' + Number(job.id) + '"]');
      if (!row) { return; }
      var pct = Math.round(job.progress * 100);
      row.querySelector("progress").value = job.progress;
      row.querySelector(".pct").textContent = pct + "%";
      var status = row.querySelector(".status");
      status.textContent = job.status;
      status.className = "status status-" + job.status;
      row.querySelector(".stage").textContent = job.stage + (job.error ? " " + job.error : "");
      if (ACTIVE[job.status]) { live = true; } else {
        var form = row.querySelector("form");
        if (form) { form.remove(); }
      }
    });
    return live;
  }
  function poll() {
    fetch("/ui/jobs.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (jobs) { if (update(jobs)) { setTimeout(poll, 1000); } else { delete table.dataset.live; } })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1000);
})();
