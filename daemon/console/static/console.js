// The console's only script: copy buttons. Served from the daemon (CSP: script-src 'self').
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () {
          field.select();
          button.textContent = "Selected: press Ctrl+C";
        });
      } else {
        // Plain HTTP (e.g. a .onion address) has no clipboard API: select the key instead.
        field.select();
        document.execCommand("copy") ? done() : (button.textContent = "Selected: press Ctrl+C");
      }
    });
  });
});
