// The workbench upload page: drag and drop onto the file input, a room type per photo, and the cost
// shown (from the estimate view) before the confirm button is enabled. docs/architecture.md#the-workbench
(function () {
  "use strict";
  const form = document.getElementById("workbench");
  if (!form) return;
  const input = document.getElementById("images");
  const zone = document.getElementById("dropzone");
  const list = document.querySelector("#photo-list tbody");
  const model = form.querySelector("[name=model]");
  const hidden = form.querySelector("[name=estimated_cost]");
  const estimate = document.getElementById("estimate");
  const confirm = document.getElementById("confirm");

  function listPhotos() {
    list.replaceChildren();
    Array.from(input.files).forEach(function (file, index) {
      const row = document.createElement("tr");
      const name = document.createElement("td");
      name.textContent = file.name;
      const cell = document.createElement("td");
      const room = document.createElement("input");
      room.name = "room_types";
      room.value = form.dataset.defaultRoom;
      room.setAttribute("aria-label", "Room type of " + file.name);
      room.id = "room-type-" + index;
      cell.append(room);
      row.append(name, cell);
      list.append(row);
    });
  }

  function refreshEstimate() {
    const count = input.files.length;
    confirm.disabled = true;
    hidden.value = "";
    if (!count || !model.value) {
      estimate.textContent = "Estimated cost: choose photos and a model.";
      return;
    }
    const url = form.dataset.estimateUrl + "?model=" + encodeURIComponent(model.value) + "&photos=" + count;
    fetch(url, { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (data.total === undefined) { estimate.textContent = data.detail; return; }
        hidden.value = data.total;
        estimate.innerHTML = "";
        estimate.append("Estimated cost for " + data.photos + " photo(s): ");
        const strong = document.createElement("strong");
        strong.textContent = data.display;
        estimate.append(strong);
        confirm.value = "Confirm and stage for " + data.display;
        confirm.disabled = false;
      });
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.style.background = "#eef6fa"; });
  });
  zone.addEventListener("dragleave", function () { zone.style.background = ""; });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.style.background = "";
    input.files = event.dataTransfer.files;
    input.dispatchEvent(new Event("change"));
  });
  input.addEventListener("change", function () { listPhotos(); refreshEstimate(); });
  model.addEventListener("change", refreshEstimate);
  listPhotos();
  refreshEstimate();
  form.dataset.ready = "1";  // the drop zone listens from here on (the browser tests wait for it)
})();
