// Upload order files with a progress bar, then follow the import on the server
// (queued, then running: the server words it) until it finishes and open its report.
// The upload's own words come translated from the form's data attributes. The button
// waits while a file is on its way (a second click would import it twice); an answer
// that is not ours (the sign-in page once the session ended, a proxy's error page) is
// said so, never left at "100%".
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const box = document.getElementById("upload-progress");
  const bar = document.getElementById("upload-bar");
  const text = document.getElementById("upload-text");
  const button = form.querySelector("button[type=submit]");
  const FOLLOW_TRIES = 5; // status requests that may fail in a row before we give up

  function failed(words) {
    text.textContent = words;
    text.classList.replace("muted", "error");
    button.disabled = false;
  }

  function signedOut(url) {
    return url && new URL(url, window.location.href).pathname.startsWith("/login");
  }

  function follow(statusUrl, misses) {
    fetch(statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => {
        if (signedOut(response.url)) throw new Error("signed out");
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then((state) => {
        if (state.status === "queued" || state.status === "running") {
          bar.removeAttribute("value");
          text.textContent = state.message;
          setTimeout(() => follow(statusUrl, 0), 1000);
        } else {
          window.location = state.detail_url;
        }
      })
      .catch((error) => {
        if (error.message === "signed out") {
          failed(form.dataset.expired);
        } else if (misses + 1 < FOLLOW_TRIES) {
          setTimeout(() => follow(statusUrl, misses + 1), 2000);
        } else {
          failed(form.dataset.lost);
        }
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    text.classList.replace("error", "muted");
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round((e.loaded / e.total) * 100);
        text.textContent = form.dataset.uploading + " " + bar.value + "%";
      }
    });
    request.addEventListener("load", function () {
      if (signedOut(request.responseURL)) {
        failed(form.dataset.expired);
        return;
      }
      let reply = null;
      try {
        reply = JSON.parse(request.responseText);
      } catch (error) {
        reply = null;
      }
      if (request.status === 403 && !reply) {
        failed(form.dataset.forbidden); // a stale page (signed in again elsewhere) or no right
        return;
      }
      if (request.status !== 200 || !reply || !reply.status_url) {
        failed((reply && reply.error) || form.dataset.failed + " (HTTP " + request.status + ")");
        return;
      }
      follow(reply.status_url, 0);
    });
    request.addEventListener("error", function () {
      failed(form.dataset.failed);
    });
    box.hidden = false;
    request.send(new FormData(form));
  });
})();
