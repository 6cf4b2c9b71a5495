/* The idle culler's admin page: running servers, exemptions, culls per hour, last passes. */
(function () {
  "use strict";
  var D = window.JHLEDash, el = D.el, $ = function (id) { return document.getElementById(id); };
  var exempted = {};

  function card(label, value, detail, testid) {
    return el("div", { class: "card", "data-testid": testid },
      el("div", { class: "label" }, label),
      el("div", { class: "value" }, value),
      detail ? el("div", { class: "detail" }, detail) : null);
  }

  function renderCards(status, servers, exemptions) {
    var cfg = status.config || {}, last = status.last_pass;
    var soon = servers.filter(function (s) { return s.seconds_left !== null && s.seconds_left < 600; });
    D.fill($("cards"), [
      card("Running servers", servers.length, soon.length + " culled within 10 min", "card-servers"),
      card("Idle timeout", D.duration(cfg.timeout),
           "pass every " + D.duration(cfg.cull_every) + (cfg.dry_run ? " \u00b7 DRY RUN" : ""),
           "card-timeout"),
      card("Next pass", status.pass_running ? "running" : D.relative(status.next_pass),
           status.next_pass ? D.when(status.next_pass) : "", "card-next"),
      card("Last pass", last ? D.relative(last.finished || last.started) : "none yet",
           last ? last.counts.culled + " culled, " + last.counts.warned + " warned, " +
             last.counts.errors + " errors" : "", "card-last"),
      card("Exemptions", exemptions.filter(function (e) { return e.active; }).length,
           "active now", "card-exemptions"),
    ]);
  }

  function statusTag(s) {
    if (s.timeout_seconds === null || s.reason === "exempt") {
      return el("span", { class: "tag exempt" }, s.exempt_until ? "exempt until " + D.when(s.exempt_until) : "exempt");
    }
    if (s.next_action === "cull") { return el("span", { class: "tag cull" }, "culled next pass (" + s.reason + ")"); }
    if (s.next_action === "warn" || s.warned_at) { return el("span", { class: "tag warn" }, s.warned_at ? "warned " + D.relative(s.warned_at) : "warning next pass"); }
    if (s.pending) { return el("span", { class: "tag" }, "pending " + s.pending); }
    return el("span", { class: "tag keep" }, s.reason);
  }

  function prefillExemption(user) {
    var form = $("exempt-form");
    if (!form) { return; }
    form.elements.user.value = user;
    form.elements.reason.focus();
  }

  function renderServers(doc) {
    var rows = doc.servers.map(function (s) {
      var left = s.seconds_left;
      return el("tr", { "data-user": s.user },
        el("td", { class: "name" }, s.user),
        el("td", {}, s.server || "(default)"),
        el("td", { class: "num" }, D.duration(s.idle_seconds)),
        el("td", { class: "num", title: "from " + s.timeout_source },
           s.timeout_seconds === null ? "none" : D.duration(s.timeout_seconds)),
        el("td", { class: left !== null && left < 600 ? "num soon" : "num",
                   title: s.cull_at ? D.when(s.cull_at) : "" },
           s.cull_at ? D.relative(s.cull_at) + " (" + D.when(s.cull_at) + ")" : "never"),
        el("td", {}, statusTag(s)),
        D.cfg.canChange ? el("td", {}, exempted[s.user] ? null :
          el("button", { type: "button", class: "small secondary",
                         onclick: function () { prefillExemption(s.user); } }, "Exempt\u2026")) : null);
    });
    D.fill($("servers"), rows.length ? rows : D.emptyRow(7, "No server is running."));
    $("servers-hint").textContent = "as of " + D.when(doc.now);
  }

  function removeExemption(name) {
    D.api("DELETE", "api/exemptions/" + encodeURIComponent(name)).then(function (res) {
      if (D.reportChange(res, "Exemption of " + name + " removed.")) { refresh(); }
    });
  }

  function renderExemptions(items) {
    exempted = {};
    var rows = items.map(function (e) {
      exempted[e.name] = e.active;
      return el("tr", { "data-user": e.name, class: e.active ? "" : "expired" },
        el("td", { class: "name" }, e.name),
        el("td", {}, e.until ? D.when(e.until) + (e.active ? " (" + D.relative(e.until) + ")" : " (expired)") : "until removed"),
        el("td", { class: "reason" }, e.reason || "\u2013"),
        el("td", { title: D.when(e.created) }, e.created_by || "\u2013"),
        D.cfg.canChange ? el("td", {}, el("button", { type: "button", class: "small secondary",
          "data-testid": "remove-exemption", onclick: function () { removeExemption(e.name); } }, "Remove")) : null);
    });
    D.fill($("exemptions"), rows.length ? rows : D.emptyRow(5, "No exemptions."));
  }

  function renderHistory(doc) {
    var culled = 0, dry = 0;
    var buckets = doc.hourly.map(function (b) {
      culled += b.culled; dry += b.would_cull;
      var end = new Date(D.toDate(b.start).getTime() + 3600e3);
      return { start: b.start, value: b.culled, extra: b.would_cull,
               title: D.when(b.start) + "\u2013" + end.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }) +
                 ": " + b.culled + " culled" + (b.would_cull ? ", " + b.would_cull + " in dry runs" : "") +
                 ", " + b.warned + " warned, " + b.passes + " passes" };
    });
    D.barChart($("culls-chart"), buckets, "Culls per hour over the last 24 hours");
    $("chart-hint").textContent = culled + " culled in 24 h" + (dry ? ", " + dry + " more in dry runs" : "");
    var rows = doc.passes.map(function (p) {
      var names = p.culled_names.join(", ");
      return el("tr", {},
        el("td", { title: p.started }, D.when(p.started)),
        el("td", {}, p.trigger + (p.dry_run ? " (dry run)" : "")),
        el("td", { class: "num" }, p.duration_seconds.toFixed(2) + " s"),
        el("td", { class: "num" }, p.servers_scanned),
        el("td", { class: "num" }, p.counts.culled + p.counts.stopping),
        el("td", { class: "num" }, p.counts.warned),
        el("td", { class: p.counts.errors ? "num soon" : "num" }, p.counts.errors),
        el("td", { class: "reason" }, names || "\u2013"));
    });
    D.fill($("passes"), rows.length ? rows : D.emptyRow(8, "No pass yet."));
  }

  function load() {
    return Promise.all([
      D.getJSON("api/status"), D.getJSON("api/servers"),
      D.getJSON("api/exemptions"), D.getJSON("api/history?hours=24&limit=15"),
    ]).then(function (docs) {
      renderExemptions(docs[2].exemptions);
      renderServers(docs[1]);
      renderCards(docs[0], docs[1].servers, docs[2].exemptions);
      renderHistory(docs[3]);
    });
  }

  var refresh = D.poll(load);

  function setUpForm() {
    var form = $("exempt-form");
    if (!form) { return; }
    var untilLabel = form.querySelector("label.until");
    form.elements["for"].addEventListener("change", function () {
      untilLabel.hidden = form.elements["for"].value !== "until";
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var user = form.elements.user.value.trim(), choice = form.elements["for"].value;
      var payload = { reason: form.elements.reason.value };
      if (choice === "until") {
        var d = D.toDate(form.elements.until.value);
        if (!d) { D.notice("Pick the date and time the exemption ends.", true); return; }
        payload.until = d.toISOString();
      } else if (choice) {
        payload.until = new Date(Date.now() + Number(choice) * 1000).toISOString();
      }
      D.api("PUT", "api/exemptions/" + encodeURIComponent(user), payload).then(function (res) {
        if (D.reportChange(res, "Exemption of " + user + " saved.")) { form.reset(); untilLabel.hidden = true; refresh(); }
      });
    });
  }

  function runPass(dry) {
    D.notice(dry ? "Dry run started\u2026" : "Pass started\u2026", false);
    D.api("POST", "api/passes" + (dry ? "?dry_run=1" : "")).then(function (res) {
      if (res.ok) {
        var c = res.data.counts;
        D.notice((dry ? "Dry run: would cull " : "Pass done: culled ") + (c.culled + c.stopping) +
                 ", warned " + c.warned + ", errors " + c.errors + ".", false);
        refresh();
      } else {
        D.reportChange(res, "");
      }
    });
  }

  setUpForm();
  if ($("run-pass")) {
    $("run-pass").addEventListener("click", function () { runPass(false); });
    $("dry-run").addEventListener("click", function () { runPass(true); });
  }
})();
