// The customer's tags on the 360° page: a fragment from the tagging app, loaded once the
// page is shown; its forms (add or remove a manual tag) post back and swap the fragment.
(function () {
  "use strict";
  document.querySelectorAll("[data-customer-tags]").forEach(function (box) {
    function swap(url, options) {
      const request = Object.assign(
        { credentials: "same-origin", headers: { "X-Requested-With": "XMLHttpRequest" } },
        options || {}
      );
      fetch(url, request)
        .then(function (response) {
          // 400 is the fragment with the reason a change was refused.
          if (response.ok || response.status === 400) return response.text();
          throw new Error(String(response.status));
        })
        .then(function (html) { box.innerHTML = html; })
        .catch(function () { box.textContent = box.dataset.failed; });
    }
    box.addEventListener("submit", function (event) {
      const form = event.target;
      event.preventDefault();
      const body = new FormData(form);
      if (event.submitter && event.submitter.name) {
        body.set(event.submitter.name, event.submitter.value);
      }
      // getAttribute: a button named "action" shadows form.action
      swap(form.getAttribute("action"), { method: "POST", body: body });
    });
    swap(box.dataset.src);
  });
})();
