// The job page's before/after slider (admin/staging/stagingjob/change_form.html): no dependencies.
// The staged image sits over the original inside a box whose width is the slider's position; dragging
// on the image or moving the range input changes that width. "Compare" buttons pick which output it shows.
(function () {
  "use strict";

  function setup(slider) {
    var after = slider.querySelector(".ba-after");
    var afterImg = slider.querySelector(".ba-after-img");
    var before = slider.querySelector(".ba-before");
    var handle = slider.querySelector(".ba-handle");
    var range = document.getElementById("ba-range");

    function fit() {
      // The staged image always spans the whole original, whatever the box's clip width.
      afterImg.style.width = before.clientWidth + "px";
      afterImg.style.height = before.clientHeight + "px";
    }

    function move(percent) {
      var p = Math.max(0, Math.min(100, percent));
      after.style.width = p + "%";
      handle.style.left = p + "%";
      slider.dataset.position = String(Math.round(p));
      if (range) range.value = String(Math.round(p));
    }

    function fromPointer(event) {
      var box = slider.getBoundingClientRect();
      move(((event.clientX - box.left) / box.width) * 100);
    }

    var dragging = false;
    slider.addEventListener("pointerdown", function (event) {
      dragging = true;
      slider.setPointerCapture(event.pointerId);
      fromPointer(event);
      event.preventDefault();
    });
    slider.addEventListener("pointermove", function (event) {
      if (dragging) fromPointer(event);
    });
    ["pointerup", "pointercancel"].forEach(function (name) {
      slider.addEventListener(name, function () {
        dragging = false;
      });
    });
    if (range) {
      range.addEventListener("input", function () {
        move(Number(range.value));
      });
    }
    before.addEventListener("load", fit);
    window.addEventListener("resize", fit);
    fit();

    document.querySelectorAll(".compare-output .compare-with").forEach(function (button) {
      button.addEventListener("click", function () {
        var figure = button.closest(".compare-output");
        afterImg.src = figure.dataset.full;
        afterImg.hidden = false;
        document.querySelectorAll(".compare-output.is-compared").forEach(function (other) {
          other.classList.remove("is-compared");
        });
        figure.classList.add("is-compared");
        var caption = document.getElementById("ba-caption");
        if (caption) caption.textContent = "Comparing with " + figure.querySelector("img").alt + ".";
        slider.scrollIntoView({ block: "nearest" });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var slider = document.getElementById("ba-slider");
    if (slider) setup(slider);
  });
})();
