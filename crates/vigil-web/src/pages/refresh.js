// Vigil's one script: while a release in the list is running, re-fetch the list region every
// few seconds and put it in place. The page works the same without it (reload to update).
"use strict";

(function () {
  const region = document.getElementById("releases");
  if (!region) {
    return;
  }
  const every = Number(region.dataset.every) || 5000;

  function schedule() {
    if (region.dataset.running === "true") {
      window.setTimeout(refresh, every);
    }
  }

  async function refresh() {
    // Someone moving through the list with the keyboard keeps their place.
    if (region.contains(document.activeElement)) {
      schedule();
      return;
    }
    let response;
    try {
      response = await fetch(region.dataset.fragment, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
    } catch (error) {
      schedule(); // the server is out of reach for now: try again later
      return;
    }
    if (!response.ok) {
      return; // signed out or refused: a reload will say why
    }
    const holder = document.createElement("div");
    holder.innerHTML = await response.text();
    const fresh = holder.querySelector("#releases");
    if (!fresh) {
      return;
    }
    region.innerHTML = fresh.innerHTML;
    region.dataset.running = fresh.dataset.running;
    schedule();
  }

  schedule();
})();
