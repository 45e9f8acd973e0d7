// Live log of a running build over Server-Sent Events (/builds/ID/events). The server sends each
// line already HTML-escaped with ANSI colours as spans, so inserting it as HTML is safe.
(function () {
  "use strict";
  // The page reloads itself to show what changed, but never over a link or form the user just
  // followed: a reload would cancel that navigation (a sign-out, a re-run) while it is on its way.
  var leaving = false;
  window.addEventListener("beforeunload", function () {
    leaving = true;
    setTimeout(function () { leaving = false; }, 10000);  // a download leaves the page where it was
  });
  function reloadIn(ms) { setTimeout(function () { if (!leaving) window.location.reload(); }, ms); }

  // The build list: while something is queued or running, refresh it now and then (as Jenkins does).
  var list = document.querySelector("table.builds[data-refresh='1']");
  if (list) reloadIn(5000);

  var log = document.getElementById("log");
  var refilter = function () {};  // the log search, once logTools has set it up
  if (log) logTools(log);
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
      s = document.createElement("details");
      s.className = "step";
      s.open = true;
      var h = document.createElement("summary");
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
      reloadIn(300);
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
    var h = section(d).querySelector("summary");
    h.textContent = d.stage + " / " + d.job + " / " + d.name + (d.attempt > 1 ? " (attempt " + d.attempt + ")" : "");
    setStatus(waits(d.stage, "running"));
    // An approval stage began: the page drawn by the server has its question and the buttons.
    if (d.job === "approval" && !document.querySelector(".approval[data-stage='" + CSS.escape(d.stage) + "']")) {
      reloadIn(1000);
    }
  });
  source.addEventListener("line", function (e) {
    var d = data(e), stick = follow();
    var lines = section(d).querySelector(".lines");
    var stamp = clock(Date.now() / 1000 - Number(log.dataset.started || Date.now() / 1000));
    d.html.forEach(function (html) {
      var l = document.createElement("div");
      l.className = "l";
      l.dataset.t = stamp;
      l.innerHTML = html;
      lines.appendChild(l);
    });
    refilter();
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
    reloadIn(800);
  });

  // -- the log's tools: search (a filter of lines), timestamps, expand/collapse, load more --------
  function clock(seconds) {
    var s = Math.max(0, Math.floor(seconds)), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return (h ? h + ":" + two(m) : two(m)) + ":" + two(s % 60);
  }
  function logTools(log) {
    var tools = document.getElementById("log-tools");
    if (!tools) return;
    tools.hidden = false;
    var search = document.getElementById("log-search"), count = document.getElementById("log-count");
    refilter = function () {
      var q = search.value.trim().toLowerCase(), hits = 0;
      log.classList.toggle("searching", !!q);
      log.querySelectorAll("details.step").forEach(function (step) {
        var found = 0;
        step.querySelectorAll(".l").forEach(function (l) {
          var hit = !q || l.textContent.toLowerCase().indexOf(q) >= 0;
          l.classList.toggle("miss", !hit);
          if (hit && q) found++;
        });
        step.classList.toggle("miss", !!q && !found);
        if (found) step.open = true;
        hits += found;
      });
      var more = log.querySelector("a.more-log") ? " in what is loaded" : "";
      count.textContent = q ? hits + (hits === 1 ? " line" : " lines") + more : "";
    };
    var timer = null;
    search.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(refilter, 120); });
    document.getElementById("log-times").addEventListener("change", function (e) {
      log.classList.toggle("times", e.target.checked);
    });
    function openAll(open) { log.querySelectorAll("details.step").forEach(function (d) { d.open = open; }); }
    document.getElementById("log-expand").addEventListener("click", function () { openAll(true); });
    document.getElementById("log-collapse").addEventListener("click", function () { openAll(false); });
    log.addEventListener("click", function (e) {
      var link = e.target.closest("a.more-log");
      if (!link) return;
      e.preventDefault();
      link.textContent = "Loading…";
      fetch(link.href, {credentials: "same-origin"}).then(function (r) { return r.text(); }).then(function (html) {
        var part = document.createElement("template");
        part.innerHTML = html;
        link.remove();
        Array.prototype.forEach.call(part.content.children, function (el) {
          var last = log.querySelector("details.step:last-of-type");
          // A step cut between two parts goes on in its own box.
          if (el.matches("details.step") && last && last.dataset.key === el.dataset.key) {
            last.querySelector(".lines").append.apply(last.querySelector(".lines"),
              Array.prototype.slice.call(el.querySelector(".lines").children));
          } else {
            log.appendChild(el.cloneNode(true));
          }
        });
        refilter();
      });
    });
  }
})();
