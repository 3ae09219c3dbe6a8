// Live job table: polls the workbench status view every two seconds and updates each row in place
// until every job has finished (no reload). docs/architecture.md#the-workbench
(function () {
  "use strict";
  const table = document.querySelector("table.staging-live");
  if (!table || !table.dataset.statusUrl) return;

  function link(href, text, cls) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    if (cls) a.className = cls;
    return a;
  }

  function render(job) {
    const row = table.querySelector('tr[data-job="' + job.id + '"]');
    if (!row) return;
    const status = row.querySelector("td.status");
    status.dataset.status = job.status;
    status.textContent = job.status + (job.error ? ": " + job.error : "");
    const outputs = row.querySelector("td.outputs");
    outputs.replaceChildren();
    if (!job.outputs.length) { outputs.textContent = "-"; return; }
    job.outputs.forEach(function (out) {
      const img = document.createElement("img");
      img.src = out.thumbnail;
      img.alt = "staged " + job.id;
      img.style.maxWidth = "120px";
      img.style.maxHeight = "90px";
      const thumb = link(out.clean, "");
      thumb.append(img);
      outputs.append(thumb, document.createElement("br"), link(out.clean, "clean", "clean"), " · ",
        link(out.labelled, "labelled", "labelled"), " ");
    });
  }

  function poll() {
    fetch(table.dataset.statusUrl, { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        data.jobs.forEach(render);
        if (!data.done) setTimeout(poll, 2000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);
})();
