// Refreshes the dashboard's live part every few seconds (no build step, no framework).
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) {
    return;
  }
  const every = Number(live.dataset.refresh || "10") * 1000;
  async function refresh() {
    try {
      const response = await fetch(live.dataset.src, {
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.status === 401) {
        window.location.assign("/login"); // the session ended
        return;
      }
      if (response.ok) {
        live.innerHTML = await response.text(); // rendered and escaped by the server
      }
    } catch (error) {
      // the server is restarting: the next tick tries again
    }
  }
  window.setInterval(refresh, every);
})();
