// Follow the jobs still queued or running (exports, bulk taggings): each row's status and
// count as the worker goes (the server words it), and the page again once one has finished.
(function () {
  document.querySelectorAll("tr[data-status-url]").forEach(function (row) {
    function follow() {
      fetch(row.dataset.statusUrl, { credentials: "same-origin" })
        .then((response) => response.json())
        .then((state) => {
          if (state.status === "queued" || state.status === "running") {
            row.querySelector("[data-role=status]").textContent = state.message;
            if (state.total !== null) {
              const count = (n) => n.toLocaleString();
              row.querySelector("[data-role=rows]").textContent =
                count(state.rows) + " / " + count(state.total);
            }
            setTimeout(follow, 1000);
          } else {
            window.location.reload();
          }
        })
        .catch(() => {}); // signed out, or the server is away: the page stays as it is
    }
    follow();
  });
})();
