// Live pages: every few seconds, while the tab is visible, fetch the page again and swap in
// its <main data-live>. Skipped while a form on the page is being filled in (a checked box,
// a focused field), so a refresh never throws away what a person is doing.
(function () {
  const every = Number(document.body.dataset.refresh || 2000);
  function busy(main) {
    const focused = document.activeElement;
    // a field being typed in holds the page; a clicked checkbox keeps focus, and its ticks
    // are counted below, so it alone does not
    if (focused && main.contains(focused) &&
        focused.matches("input:not([type=checkbox]):not([type=radio]), select, textarea")) return true;
    return main.querySelector("input[type=checkbox]:checked") !== null;
  }
  async function tick() {
    const main = document.querySelector("main[data-live]");
    if (!main || document.visibilityState !== "visible" || busy(main)) return;
    try {
      const response = await fetch(location.href, { headers: { "X-Live": "1" }, credentials: "same-origin" });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.querySelector("main[data-live]");
      if (busy(main) || document.visibilityState !== "visible") return;  // ticked meanwhile
      if (fresh) main.innerHTML = fresh.innerHTML;
      document.body.dataset.refreshed = String(Date.now());
    } catch (e) { /* the next tick tries again */ }
  }
  setInterval(tick, every);
})();
