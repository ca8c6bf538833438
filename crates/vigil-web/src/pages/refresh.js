// Vigil's one script: while a release in the list is running, re-fetch the list region every
// few seconds and put it in place; while a replay of stored history runs, reload its page; and write the charts' time ticks in the viewer's time zone
// (the server writes them in UTC). The page works the same without it (reload to update; times
// in UTC).
"use strict";

(function () {
  const ticks = document.querySelectorAll("text[data-time]");
  if (ticks.length === 0) {
    return;
  }
  const clock = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  });
  const day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  for (const tick of ticks) {
    const time = new Date(Number(tick.dataset.time) * 1000);
    if (Number.isNaN(time.getTime())) {
      continue;
    }
    const midnight = time.getHours() === 0 && time.getMinutes() === 0;
    switch (tick.dataset.format) {
      case "day":
        // A day's tick at another hour than midnight here says the hour too.
        tick.textContent = midnight ? day.format(time) : day.format(time) + " " + clock.format(time);
        break;
      case "hour":
        tick.textContent = midnight ? day.format(time) : clock.format(time);
        break;
      default:
        tick.textContent = clock.format(time);
    }
  }
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  for (const note of document.querySelectorAll("[data-zone-note]")) {
    note.textContent = "Times in your time zone" + (zone ? " (" + zone + ")" : "") + ".";
  }
})();

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

(function () {
  // A replay of stored history under way: reload its page until it is done.
  const progress = document.querySelector("progress[data-reload]");
  if (!progress) {
    return;
  }
  const every = Number(progress.dataset.reload) || 2000;
  window.setTimeout(function () {
    window.location.reload();
  }, every);
})();
