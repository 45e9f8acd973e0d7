// Live log of a running build over Server-Sent Events (/builds/ID/events). The server sends each
// line already HTML-escaped with ANSI colours as spans, so inserting it as HTML is safe.
(function () {
  "use strict";
  // The build list: while something is queued or running, refresh it now and then (as Jenkins does).
  var list = document.querySelector("table.builds[data-refresh='1']");
  if (list) setTimeout(function () { window.location.reload(); }, 5000);

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
      h.textContent = d.stage + " / " + d.job + " / " + (d.name || "step " + (d.step + 1));
      s.appendChild(h);
      var lines = document.createElement("div");
      lines.className = "lines";
      s.appendChild(lines);
      log.appendChild(s);
      sections[key] = s;
    }
    return s;
  }
  function mark(el, s) {
    if (el) el.className = el.className.replace(/status-\S+/, "status-" + s);
  }
  // Stage boxes and job rows the page did not have yet (it was drawn before they started).
  var view = document.querySelector("ol.stage-view");
  function stageBox(name) {
    var box = document.querySelector('.stage[data-stage="' + CSS.escape(name) + '"]');
    if (!box && view) {
      var none = view.querySelector(".stage-none");
      if (none) none.remove();
      box = document.createElement("li");
      box.className = "stage status-queued";
      box.dataset.stage = name;
      var title = document.createElement("div");
      title.className = "stage-name";
      title.textContent = name;
      var jobs = document.createElement("ul");
      jobs.className = "jobs";
      box.appendChild(title);
      box.appendChild(jobs);
      view.appendChild(box);
    }
    return box;
  }
  function jobRow(stage, name) {
    var box = stageBox(stage);
    if (!box) return null;
    var row = box.querySelector('.job[data-job="' + CSS.escape(name) + '"]');
    var jobs = box.querySelector("ul.jobs");
    if (!row && jobs) {
      row = document.createElement("li");
      row.className = "job status-queued";
      row.dataset.job = name;
      row.textContent = name;
      jobs.appendChild(row);
    }
    return row;
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
    // An approval stage began: the page drawn by the server has its question and the buttons.
    if (d.job === "approval" && !document.querySelector(".approval[data-stage='" + CSS.escape(d.stage) + "']")) {
      setTimeout(function () { window.location.reload(); }, 1000);
    }
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
    mark(stageBox(d.stage), d.status);
  });
  source.addEventListener("job", function (e) {
    var d = data(e);
    mark(jobRow(d.stage, d.job), d.status);
  });
  source.addEventListener("status", function (e) { setStatus(data(e).status); });
  source.addEventListener("end", function (e) {
    source.close();
    setStatus(data(e).status);
    // The finished page shows the stored log, durations and the stage view in their final form.
    setTimeout(function () { window.location.reload(); }, 800);
  });
})();
