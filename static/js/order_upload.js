// Upload order files with a progress bar, then follow the import on the server
// (queued, then running: the server words it) until it finishes and open its report.
// The upload's own words come translated from the form's data attributes.
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const box = document.getElementById("upload-progress");
  const bar = document.getElementById("upload-bar");
  const text = document.getElementById("upload-text");

  function follow(statusUrl) {
    fetch(statusUrl, { credentials: "same-origin" })
      .then((response) => response.json())
      .then((state) => {
        if (state.status === "queued" || state.status === "running") {
          bar.removeAttribute("value");
          text.textContent = state.message;
          setTimeout(() => follow(statusUrl), 1000);
        } else {
          window.location = state.detail_url;
        }
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round((e.loaded / e.total) * 100);
        text.textContent = form.dataset.uploading + " " + bar.value + "%";
      }
    });
    request.addEventListener("load", function () {
      const reply = JSON.parse(request.responseText);
      if (request.status !== 200) {
        text.textContent = reply.error || form.dataset.failed;
        return;
      }
      follow(reply.status_url);
    });
    box.hidden = false;
    request.send(new FormData(form));
  });
})();
