// The console's only script: partial refresh without a framework or a build step.
// Elements with data-refresh="URL" data-every="SECONDS" have their content replaced by GET URL
// (plus the filter form's fields) every SECONDS; changing a filter refreshes at once.
(function () {
  "use strict";
  function query(form) {
    if (!form) return "";
    var params = new URLSearchParams(new FormData(form));
    Array.from(params.keys()).forEach(function (k) { if (!params.get(k)) params.delete(k); });
    var text = params.toString();
    return text ? "?" + text : "";
  }
  function refresh(el, form) {
    return fetch(el.dataset.refresh + query(form), { credentials: "same-origin" })
      .then(function (r) {
        if (r.redirected || r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) { if (html !== null) { el.innerHTML = html; el.dispatchEvent(new Event("refreshed")); } })
      .catch(function () { /* keep the last content; the next tick retries */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("filters");
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      var every = parseFloat(el.dataset.every || "5") * 1000;
      setInterval(function () { refresh(el, form); }, every);
      if (form) {
        form.addEventListener("input", function () {
          history.replaceState(null, "", window.location.pathname + query(form));
          refresh(el, form);
        });
        form.addEventListener("submit", function (e) { e.preventDefault(); refresh(el, form); });
      }
    });
  });
})();
