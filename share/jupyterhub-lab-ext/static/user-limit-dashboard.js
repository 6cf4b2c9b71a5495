/* The user-limit service's admin page: usage against each cap, the queue, caps, usage chart. */
(function () {
  "use strict";
  var D = window.JHLEDash, el = D.el, $ = function (id) { return document.getElementById(id); };
  var form = $("caps-form");
  var dirty = false;  // the admin is editing: polling leaves the form alone
  var shown = null;   // the limits the form was last filled with
  var overridden = []; // caps changed at runtime (not from the config file)

  function renderGauges(status) {
    var lim = status.limits, use = status.usage, parts = [];
    parts.push(D.gauge("Servers", use.active_servers, lim.max_active_servers,
      use.reserved ? use.reserved + " held for the queue" : (status.full ? "full" : ""), "gauge-servers"));
    parts.push(D.gauge("User seats", use.seats, lim.max_users, "", "gauge-seats"));
    Object.keys(lim.group_quotas).sort().forEach(function (g) {
      parts.push(D.gauge("Group " + g, use.groups[g] || 0, lim.group_quotas[g], "", "gauge-group"));
    });
    parts.push(el("div", { class: "card", "data-testid": "card-queue" },
      el("div", { class: "label" }, "Waiting"),
      el("div", { class: "value" }, status.queue_length),
      el("div", { class: "detail" }, lim.max_servers_per_user
        ? "at most " + lim.max_servers_per_user + " server(s) per user" : "no per-user cap")));
    D.fill($("gauges"), parts);
  }

  function renderQueue(queue) {
    var now = Date.now() / 1000;
    var rows = queue.entries.map(function (w) {
      return el("tr", { "data-user": w.user },
        el("td", { class: "num" }, w.position),
        el("td", { class: "name" }, w.user),
        el("td", {}, w.server_name || "(default)"),
        el("td", {}, w.groups.join(", ") || "\u2013"),
        el("td", { class: "num", title: D.when(w.enqueued) }, D.duration(now - w.enqueued)));
    });
    D.fill($("queue"), rows.length ? rows : D.emptyRow(5, "Nobody is waiting."));
    $("queue-hint").textContent = queue.length ? queue.length + " waiting; the first in line gets the next free place" : "";
    var held = queue.reserved.map(function (a) {
      return el("tr", { "data-user": a.user },
        el("td", { class: "name" }, a.user),
        el("td", {}, a.server_name || "(default)"),
        el("td", {}, D.relative(a.created)),
        el("td", {}, a.expires ? D.relative(a.expires) : "\u2013"));
    });
    D.fill($("reserved"), held.length ? held : D.emptyRow(4, "No place is held."));
  }

  function quotaRow(group, count) {
    var remove = D.cfg.canChange ? el("button", { type: "button", class: "small secondary",
      onclick: function (ev) { ev.target.closest(".quota-row").remove(); dirty = true; } }, "Remove") : null;
    return el("div", { class: "quota-row" },
      el("input", { name: "quota-group", value: group, placeholder: "group", maxlength: 255,
                    "aria-label": "group name" }),
      el("input", { name: "quota-count", type: "number", min: 0, step: 1, value: count,
                    "aria-label": "servers" }),
      remove);
  }

  function fillForm(status) {
    var lim = status.limits;
    if (dirty && shown) { return; }
    shown = JSON.stringify(lim);
    ["max_active_servers", "max_users", "max_servers_per_user"].forEach(function (k) {
      form.elements[k].value = lim[k];
    });
    form.elements.exempt_admins.checked = lim.exempt_admins;
    D.fill($("quota-rows"), Object.keys(lim.group_quotas).sort().map(function (g) {
      return quotaRow(g, lim.group_quotas[g]);
    }));
    var over = overridden = Object.keys(status.overrides || {});
    if ($("overrides")) {
      $("overrides").textContent = over.length ? "Changed here (not from the config file): " + over.join(", ") : "";
      $("reset-caps").hidden = !over.length;
    }
  }

  function renderChart(hist) {
    var pts = hist.points;
    D.lineChart($("usage-chart"), {
      start: hist.start, end: hist.end, cap: hist.cap,
      label: "Active servers and queue length over the last 24 hours",
      series: [
        { cls: "line-active", name: "active servers", points: pts.map(function (p) { return [p.start + hist.step / 2, p.active]; }) },
        { cls: "line-queue", name: "waiting", points: pts.map(function (p) { return [p.start + hist.step / 2, p.queued]; }) },
      ],
      legend: [{ cls: "sw-active", name: "active servers" }, { cls: "sw-queue", name: "waiting" }]
        .concat(hist.cap ? [{ cls: "sw-cap", name: "cap" }] : []),
    });
    var peak = pts.reduce(function (m, p) { return p.active === null ? m : Math.max(m, p.active); }, 0);
    var longest = pts.reduce(function (m, p) { return p.queued === null ? m : Math.max(m, p.queued); }, 0);
    $("chart-hint").textContent = "peak " + peak + " servers, longest queue " + longest +
      " (highest per " + D.duration(hist.step) + ", sampled every " + D.duration(hist.interval) + ")";
  }

  var polls = 0, history = null;
  function load() {
    var wantHistory = history === null || polls % 6 === 0;  // the chart moves slowly: every 30 s
    polls += 1;
    return Promise.all([
      D.getJSON("api/status"), D.getJSON("api/queue"),
      wantHistory ? D.getJSON("api/history?hours=24&step=300") : Promise.resolve(history),
    ]).then(function (docs) {
      renderGauges(docs[0]);
      renderQueue(docs[1]);
      fillForm(docs[0]);
      if (wantHistory) { history = docs[2]; renderChart(history); }
    });
  }

  function readForm() {
    var patch = {};
    ["max_active_servers", "max_users", "max_servers_per_user"].forEach(function (k) {
      patch[k] = Number(form.elements[k].value || 0);
    });
    patch.exempt_admins = form.elements.exempt_admins.checked;
    var quotas = {};
    Array.prototype.forEach.call(document.querySelectorAll("#quota-rows .quota-row"), function (row) {
      var g = row.querySelector("[name=quota-group]").value.trim();
      if (g) { quotas[g] = Number(row.querySelector("[name=quota-count]").value || 0); }
    });
    patch.group_quotas = quotas;
    // only what changed: untouched fields keep following the config file
    var before = JSON.parse(shown || "{}");
    Object.keys(patch).forEach(function (k) {
      if (JSON.stringify(patch[k]) === JSON.stringify(before[k])) { delete patch[k]; }
    });
    return patch;
  }

  function save(patch, okText) {
    return D.api("PUT", "api/limits", patch).then(function (res) {
      if (D.reportChange(res, okText)) { dirty = false; refresh(); }
    });
  }

  var refresh = D.poll(load);

  form.addEventListener("input", function () { dirty = true; });
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var patch = readForm();
    if (!Object.keys(patch).length) { dirty = false; D.notice("Nothing changed.", false); return; }
    save(patch, "Caps saved: " + Object.keys(patch).join(", ") + ".");
  });
  if ($("add-quota")) {
    $("add-quota").addEventListener("click", function () {
      dirty = true;
      $("quota-rows").appendChild(quotaRow("", 0));
    });
    $("reset-caps").addEventListener("click", function () {
      var patch = {};
      overridden.forEach(function (k) { patch[k] = null; });
      save(patch, "Caps back to the configured values.");
    });
  }
})();
