// dairy-edge status page: keeps <main> live by polling /api/view (ETag: 304 when
// nothing changed), shows a banner when the gateway cannot be reached, and sends
// the alert buttons as JSON with the session's CSRF token. No other requests.
(function () {
  "use strict";
  var POLL_MS = parseInt(document.body.getAttribute("data-poll-ms"), 10) || 10000;
  var view = document.getElementById("view");
  var banner = document.getElementById("banner");
  var updated = document.getElementById("updated");
  var clock = document.getElementById("clock");
  var csrf = document.body.getAttribute("data-csrf") || "";
  var etag = document.body.getAttribute("data-etag") || null;
  var lastOk = new Date();
  var busy = false;
  // Seconds to add to this phone's clock to get the gateway's (ages are the
  // gateway's time minus each reading's).
  var offset = (parseFloat(document.body.getAttribute("data-now")) || Date.now() / 1000) -
    Date.now() / 1000;
  var NB = "\u00a0";
  // The page's words in its language (a JSON block the server writes).
  var T = { s: "{n} s ago", min: "{n} min ago", h: "{n} h ago", d: "{n} d ago",
            updated: "updated {t}", unreachable: "gateway unreachable, last data {t}",
            failed: "failed", digits: "0123456789", done: {} };
  try { T = JSON.parse(document.getElementById("i18n").textContent); } catch (e) { /* English */ }

  function digits(text) {
    return String(text).replace(/[0-9]/g, function (d) { return T.digits.charAt(+d); });
  }
  function say(key, vars) {
    return T[key].replace(/\{(\w+)\}/g, function (_, k) { return digits(vars[k]); });
  }
  function ageText(s) {
    s = Math.max(0, s);
    var t;
    if (s < 90) { t = say("s", { n: Math.round(s) }); }
    else if (s < 5400) { t = say("min", { n: Math.round(s / 60) }); }
    else if (s < 172800) { t = say("h", { n: (s / 3600).toFixed(1) }); }
    else { t = say("d", { n: Math.round(s / 86400) }); }
    return t.replace(" ", NB);
  }
  function ages() {
    var now = Date.now() / 1000 + offset;
    view.querySelectorAll("time.age[data-at]").forEach(function (t) {
      t.textContent = ageText(now - parseFloat(t.getAttribute("data-at")));
    });
  }
  function noteServerTime(r) {
    var t = parseFloat(r.headers.get("X-Server-Time"));
    if (t) { offset = t - Date.now() / 1000; }
  }

  function hhmm(d, secs) {
    var p = function (n) { return (n < 10 ? "0" : "") + n; };
    return p(d.getHours()) + ":" + p(d.getMinutes()) + (secs ? ":" + p(d.getSeconds()) : "");
  }
  function tick() { if (clock) { clock.textContent = digits(hhmm(new Date(), false)); } }
  function showUpdated() {
    if (updated) { updated.textContent = say("updated", { t: hhmm(lastOk, true) }); }
  }
  function unreachable() {
    banner.textContent = say("unreachable", { t: hhmm(lastOk, false) });
    banner.hidden = false;
  }
  function openDetails() {
    var ids = [];
    view.querySelectorAll("details[id]").forEach(function (d) { ids.push([d.id, d.open]); });
    return ids;
  }
  function restoreDetails(state) {
    state.forEach(function (s) {
      var d = document.getElementById(s[0]);
      if (d) { d.open = s[1]; }
    });
  }
  function query() {
    var q = document.getElementById("q");
    return q && q.value ? "?q=" + encodeURIComponent(q.value) : "";
  }
  function poll() {
    if (busy || document.hidden) { return; }
    busy = true;
    var headers = {};
    if (etag) { headers["If-None-Match"] = etag; }
    fetch("/api/view" + query(), { headers: headers, credentials: "same-origin", cache: "no-cache" })
      .then(function (r) {
        if (r.status === 401) { window.location.href = "/login"; return null; }
        noteServerTime(r);
        if (r.status === 304) { return ""; }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        etag = r.headers.get("ETag");
        return r.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        if (html) {
          var active = document.activeElement && document.activeElement.id;
          var caret = active === "q" ? document.getElementById("q").selectionStart : null;
          var state = openDetails();
          var q = document.getElementById("q");
          var qv = q ? q.value : "";
          view.innerHTML = html;
          restoreDetails(state);
          var nq = document.getElementById("q");
          if (nq) { nq.value = qv; if (active === "q") { nq.focus(); nq.setSelectionRange(caret, caret); } }
        }
        ages();
        lastOk = new Date();
        banner.hidden = true;
        showUpdated();
      })
      .catch(unreachable)
      .then(function () { busy = false; });
  }
  function act(form, action, button) {
    var id = form.getAttribute("data-alert");
    form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    fetch("/api/alerts/" + encodeURIComponent(id) + "/action", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ action: action })
    }).then(function (r) {
      return r.json().then(function (body) { return [r.ok, body]; });
    }).then(function (res) {
      var note = document.createElement("span");
      note.className = "chip " + (res[0] ? "ok" : "bad");
      note.setAttribute("role", "status");
      note.textContent = res[0] ? (T.done[action] || action) : (res[1].error || T.failed);
      form.replaceWith(note);
      etag = null;
      poll();
    }).catch(function () {
      unreachable();
      form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
    });
  }
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.classList && form.classList.contains("act")) {
      ev.preventDefault();
      var b = ev.submitter || form.querySelector("button");
      act(form, b.value, b);
    } else if (form.classList && form.classList.contains("search")) {
      ev.preventDefault();
      etag = null;
      poll();
    }
  });
  var timer = null;
  document.addEventListener("input", function (ev) {
    if (ev.target && ev.target.id === "q") {
      clearTimeout(timer);
      timer = setTimeout(function () { etag = null; poll(); }, 400);
    }
  });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { poll(); } });
  tick();
  showUpdated();
  setInterval(function () { tick(); ages(); }, 5000);
  setInterval(poll, POLL_MS);
})();
