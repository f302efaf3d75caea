// Infinite scroll as feeds do it: when the end of the list comes into view, fetch the next
// batch (an HTML fragment whose <ul data-next> names the batch after it) and append its items.
(function () {
  "use strict";
  const list = document.querySelector("[data-feed]");
  const sentinel = document.getElementById("more");
  if (!list || !sentinel) return;
  let next = list.dataset.next || null;
  let loading = false;
  if (!next) sentinel.textContent = "That's everything.";

  async function loadMore() {
    if (!next || loading) return;
    loading = true;
    try {
      const resp = await fetch(next, { headers: { Accept: "text/html" } });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const tpl = document.createElement("template");
      tpl.innerHTML = await resp.text();
      const batch = tpl.content.querySelector("ul");
      next = (batch && batch.dataset.next) || null;
      if (batch) list.append(...batch.children);
      sentinel.textContent = next ? "Loading more posts…" : "That's everything.";
    } catch (err) {
      sentinel.textContent = "Could not load more posts.";
      next = null;
    } finally {
      loading = false;
    }
  }

  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadMore();
  }, { rootMargin: "200px" }).observe(sentinel);
})();
