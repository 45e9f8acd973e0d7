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
  // A job box of the pipeline graph: its colour and its status text; an allowed failure is a warning.
  function markJob(row, s, allowed) {
    if (!row) return;
    mark(row, s);
    row.classList.toggle("allowed", !!allowed);
    var text = row.querySelector(".job-status");
    if (text) text.textContent = allowed ? "failed, allowed" : s.replace(/_/g, " ");
    var group = row.closest("li.group");
    if (group) markGroup(group);
  }
  // A matrix box from its combinations, as runner/server/graph.py's group_status decides it.
  var BAD = ["failure", "timed_out", "interrupted"];
  function markGroup(group) {
    var members = group.querySelectorAll("li.member"), statuses = [], allowed = 0;
    members.forEach(function (m) {
      if (m.classList.contains("allowed")) allowed++;
      else statuses.push((m.className.match(/status-(\S+)/) || [])[1]);
    });
    var s = "success";
    ["running"].concat(BAD, ["cancelled", "queued"]).some(function (c) {
      if (statuses.indexOf(c) < 0) return false;
      s = BAD.indexOf(c) >= 0 ? "failure" : c;
      return true;
    });
    if (s === "success" && statuses.length && statuses.every(function (x) { return x === "skipped"; })) s = "skipped";
    var warned = allowed > 0 && s === "success";
    mark(group, s);
    group.classList.toggle("allowed", warned);
    var text = group.querySelector("summary .job-status");
    if (text) text.textContent = warned ? allowed + " failed, allowed" : s.replace(/_/g, " ");
  }
  // Stage boxes and job rows the page did not have yet (it was drawn before they started).
  var view = document.querySelector("ol.stage-view");
  var reloading = false;
  function stageBox(name) {
    // Drawn before the plan was stored: draw it again from the server, with every job and edge.
    if (view && view.querySelector(".stage-none") && !reloading) {
      reloading = true;
      setTimeout(function () { window.location.reload(); }, 300);
    }
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
  // An approval stage runs while the build waits for a person: while the page shows its question
  // unanswered, the stage, its box and the build say "waiting" (a replayed history says "running").
  function waits(stage, s) {
    var pending = document.querySelector(".approval.decision-pending[data-stage='" + CSS.escape(stage) + "']");
    return pending && s === "running" ? "waiting" : s;
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
    setStatus(waits(d.stage, "running"));
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
    mark(stageBox(d.stage), waits(d.stage, d.status));
  });
  source.addEventListener("job", function (e) {
    var d = data(e);
    markJob(jobRow(d.stage, d.job), waits(d.stage, d.status), d.allowed);
  });
  source.addEventListener("status", function (e) { setStatus(data(e).status); });
  source.addEventListener("end", function (e) {
    source.close();
    setStatus(data(e).status);
    // The finished page shows the stored log, durations and the stage view in their final form.
    setTimeout(function () { window.location.reload(); }, 800);
  });
})();
