// Live log of a running build over Server-Sent Events (/builds/ID/events). The server sends each
// line already HTML-escaped with ANSI colours as spans, so inserting it as HTML is safe.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || log.dataset.live !== "1") return;
  var status = document.getElementById("status");
  var sections = {};
  var source = new EventSource("/builds/" + log.dataset.build + "/events");

  function data(e) { return JSON.parse(e.data); }
  function setStatus(s) {
    if (!status) return;
    status.textContent = s;
    status.className = "status status-" + s;
  }
  function section(d) {
    var key = d.stage + "\u0000" + d.job + "\u0000" + d.step;
    var s = sections[key];
    if (!s) {
      s = document.createElement("section");
      s.className = "step";
      var h = document.createElement("h3");
      h.textContent = d.stage + " / " + d.job + " / " + (d.name || "step " + d.step);
      s.appendChild(h);
      var lines = document.createElement("div");
      lines.className = "lines";
      s.appendChild(lines);
      log.appendChild(s);
      sections[key] = s;
    }
    return s;
  }
  function mark(selector, s) {
    var el = document.querySelector(selector);
    if (el) el.className = el.className.replace(/status-\S+/, "status-" + s);
  }
  function follow() {
    var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    return atBottom;
  }

  source.addEventListener("reset", function () { log.textContent = ""; sections = {}; });
  source.addEventListener("step", function (e) {
    var d = data(e);
    var h = section(d).querySelector("h3");
    h.textContent = d.stage + " / " + d.job + " / " + d.name + (d.attempt > 1 ? " (attempt " + d.attempt + ")" : "");
    setStatus("running");
  });
  source.addEventListener("line", function (e) {
    var d = data(e), stick = follow();
    var lines = section(d).querySelector(".lines");
    d.html.forEach(function (html) {
      var l = document.createElement("div");
      l.className = "l";
      l.innerHTML = html;
      lines.appendChild(l);
    });
    if (stick) window.scrollTo(0, document.body.scrollHeight);
  });
  source.addEventListener("stage", function (e) {
    var d = data(e);
    mark('.stage[data-stage="' + CSS.escape(d.stage) + '"]', d.status);
  });
  source.addEventListener("job", function (e) {
    var d = data(e);
    mark('.stage[data-stage="' + CSS.escape(d.stage) + '"] .job[data-job="' + CSS.escape(d.job) + '"]', d.status);
  });
  source.addEventListener("status", function (e) { setStatus(data(e).status); });
  source.addEventListener("end", function (e) {
    source.close();
    setStatus(data(e).status);
    // The finished page shows the stored log, durations and the stage view in their final form.
    setTimeout(function () { window.location.reload(); }, 800);
  });
})();
