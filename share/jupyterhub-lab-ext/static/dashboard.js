/* Shared helpers of the jupyterhub-lab-ext admin dashboards (vanilla JavaScript, no build step).
 *
 * Every string that comes from the service (user names, reasons, group names) reaches the page
 * as a text node or an attribute value set through the DOM, never as HTML. Charts are SVG
 * elements made with createElementNS. The page's settings come from <body data-*>.
 */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var body = document.body;
  var cfg = {
    prefix: body.dataset.prefix || "./",
    xsrf: body.dataset.xsrf || "",
    canChange: body.dataset.canChange === "1",
    refreshMs: 5000,
  };

  function append(node, children) {
    children.forEach(function (c) {
      if (c === null || c === undefined || c === false) { return; }
      if (Array.isArray(c)) { append(node, c); return; }
      node.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    });
    return node;
  }

  function setAttrs(node, attrs) {
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) { return; }
      if (k.slice(0, 2) === "on" && typeof v === "function") {
        node.addEventListener(k.slice(2), v);
      } else if (k === "text") {
        node.textContent = String(v);
      } else {
        node.setAttribute(k, v === true ? "" : String(v));
      }
    });
    return node;
  }

  /** el("td", {class: "name"}, "text", child, ...): an element; strings become text nodes. */
  function el(tag, attrs) {
    var node = setAttrs(document.createElement(tag), attrs);
    return append(node, Array.prototype.slice.call(arguments, 2));
  }

  function svg(tag, attrs) {
    var node = setAttrs(document.createElementNS(SVG, tag), attrs);
    return append(node, Array.prototype.slice.call(arguments, 2));
  }

  function fill(container, nodes) {
    while (container.firstChild) { container.removeChild(container.firstChild); }
    append(container, [nodes]);
  }

  function emptyRow(columns, text) {
    return el("tr", {}, el("td", { colspan: columns, class: "empty" }, text));
  }

  /** The service's REST API with the OAuth cookie and the XSRF token. */
  function api(method, path, payload) {
    var headers = { Accept: "application/json", "X-XSRFToken": cfg.xsrf };
    var init = { method: method, credentials: "same-origin", headers: headers };
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(cfg.prefix + path, init).then(function (r) {
      if (r.status === 204) { return { ok: true, status: 204, data: null }; }
      return r.json().then(
        function (data) { return { ok: r.ok, status: r.status, data: data }; },
        function () { return { ok: r.ok, status: r.status, data: null }; }
      );
    });
  }

  function getJSON(path) {
    return api("GET", path).then(function (res) {
      if (!res.ok) {
        throw new Error((res.data && res.data.message) || "HTTP " + res.status);
      }
      return res.data;
    });
  }

  var noticeTimer = null;
  function notice(text, isError) {
    var box = document.getElementById("notice");
    box.textContent = text;
    box.className = isError ? "notice error" : "notice";
    box.hidden = false;
    box.setAttribute("data-testid", isError ? "notice-error" : "notice-ok");
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(function () { box.hidden = true; }, isError ? 12000 : 5000);
  }

  /** Report the answer of a change: the API's message on failure (403 for read-only logins). */
  function reportChange(res, okText) {
    if (res.ok) { notice(okText, false); return true; }
    var msg = (res.data && res.data.message) || "HTTP " + res.status;
    notice((res.status === 403 ? "Not allowed: " : "Failed: ") + msg, true);
    return false;
  }

  /** Run load() now and every refreshMs after it settles; paused while the tab is hidden. */
  function poll(load) {
    var live = document.getElementById("live");
    var timer = null;
    function tick() {
      clearTimeout(timer);
      Promise.resolve()
        .then(load)
        .then(function () {
          live.classList.remove("stale");
          live.textContent = "live";
          live.title = "Updated " + new Date().toLocaleTimeString();
        })
        .catch(function (e) {
          live.classList.add("stale");
          live.textContent = "not updating";
          live.title = String(e && e.message ? e.message : e);
        })
        .then(function () {
          if (!document.hidden) { timer = setTimeout(tick, cfg.refreshMs); }
        });
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { tick(); }
    });
    tick();
    return tick;
  }

  // -- formatting ------------------------------------------------------------------------
  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) { return "\u2013"; }
    var s = Math.max(0, Math.round(seconds));
    if (s < 60) { return s + " s"; }
    var m = Math.floor(s / 60);
    if (m < 60) { return m + " min"; }
    var h = Math.floor(m / 60);
    if (h < 48) { return h + " h" + (m % 60 ? " " + (m % 60) + " min" : ""); }
    return Math.floor(h / 24) + " d" + (h % 24 ? " " + (h % 24) + " h" : "");
  }

  function toDate(value) {
    if (value === null || value === undefined || value === "") { return null; }
    var d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return isNaN(d.getTime()) ? null : d;
  }

  /** "Fri 18:00" within a week, else a date and time, in the viewer's time zone. */
  function when(value) {
    var d = toDate(value);
    if (!d) { return "\u2013"; }
    var days = Math.abs(Date.now() - d.getTime()) / 864e5;
    var opts = days < 6
      ? { weekday: "short", hour: "2-digit", minute: "2-digit" }
      : { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
    return d.toLocaleString(undefined, opts);
  }

  /** "in 8 min" / "5 min ago". */
  function relative(value) {
    var d = toDate(value);
    if (!d) { return "\u2013"; }
    var secs = (d.getTime() - Date.now()) / 1000;
    return secs >= 0 ? "in " + duration(secs) : duration(-secs) + " ago";
  }

  // -- charts ----------------------------------------------------------------------------
  var W = 720, H = 220, L = 36, R = 12, T = 14, B = 28;

  function niceMax(value) {
    if (value <= 4) { return 4; }
    var step = Math.pow(10, Math.floor(Math.log10(value)));
    var n = Math.ceil(value / step);
    return (n <= 2 ? 2 : n <= 5 ? 5 : 10) * step;
  }

  function frame(maxValue) {
    var g = [svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B })];
    for (var i = 0; i <= 4; i++) {
      var v = (maxValue * i) / 4, y = H - B - ((H - B - T) * i) / 4;
      g.push(svg("line", { class: "axis", x1: L, y1: y, x2: W - R, y2: y, "stroke-opacity": 0.35 }));
      g.push(svg("text", { class: "tick", x: L - 6, y: y + 3, "text-anchor": "end" },
                 Number.isInteger(v) ? v : v.toFixed(1)));
    }
    return g;
  }

  function hourLabel(iso) {
    var d = toDate(iso);
    return d ? d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }) : "";
  }

  /** Bars, one per bucket: [{start, value, extra, title}], extra drawn in a lighter colour. */
  function barChart(container, buckets, ariaLabel) {
    var max = niceMax(Math.max.apply(null, [0].concat(buckets.map(function (b) {
      return b.value + (b.extra || 0);
    }))));
    var slot = (W - L - R) / Math.max(1, buckets.length);
    var nodes = frame(max);
    buckets.forEach(function (b, i) {
      var x = L + i * slot + slot * 0.15, w = slot * 0.7;
      var scale = function (v) { return ((H - B - T) * v) / max; };
      var h1 = scale(b.value), h2 = scale(b.extra || 0);
      var title = svg("title", {}, b.title);
      nodes.push(svg("rect", { class: "bar", x: x, y: H - B - h1, width: w, height: h1 }, title));
      if (h2 > 0) {
        nodes.push(svg("rect", { class: "bar dry", x: x, y: H - B - h1 - h2, width: w, height: h2 },
                       svg("title", {}, b.title)));
      }
      // an invisible full-height target so the tooltip shows on empty hours too
      nodes.push(svg("rect", { x: x, y: T, width: w, height: H - B - T, fill: "transparent" },
                     svg("title", {}, b.title)));
      if (i % 3 === 0) {
        nodes.push(svg("text", { class: "tick", x: x + w / 2, y: H - B + 14, "text-anchor": "middle" },
                       hourLabel(b.start)));
      }
    });
    fill(container, svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img",
                                 "aria-label": ariaLabel }, nodes));
  }

  /** Lines over time: series [{cls, name, points: [[epochSeconds, value|null], ...]}]. */
  function lineChart(container, opts) {
    var start = opts.start, end = opts.end;
    var values = [opts.cap || 0];
    opts.series.forEach(function (s) {
      s.points.forEach(function (p) { if (p[1] !== null) { values.push(p[1]); } });
    });
    var max = niceMax(Math.max.apply(null, values));
    var x = function (t) { return L + ((W - L - R) * (t - start)) / Math.max(1, end - start); };
    var y = function (v) { return H - B - ((H - B - T) * v) / max; };
    var nodes = frame(max);
    var hasData = false;
    opts.series.forEach(function (s) {
      var d = "", pen = false, pts = s.points;
      pts.forEach(function (p, i) {
        if (p[1] === null) { pen = false; return; }
        hasData = true;
        d += (pen ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1) + " ";
        pen = true;
        var alone = (i === 0 || pts[i - 1][1] === null) && (i === pts.length - 1 || pts[i + 1][1] === null);
        if (alone) {  // a lone sample draws no line: mark it
          nodes.push(svg("circle", { class: s.cls, cx: x(p[0]), cy: y(p[1]), r: 2 },
                         svg("title", {}, s.name + ": " + p[1])));
        }
      });
      if (d) { nodes.push(svg("path", { class: s.cls, d: d }, svg("title", {}, s.name))); }
    });
    if (opts.cap) {
      nodes.push(svg("line", { class: "cap", x1: L, x2: W - R, y1: y(opts.cap), y2: y(opts.cap) },
                     svg("title", {}, "cap: " + opts.cap)));
    }
    for (var i = 0; i <= 4; i++) {
      var t = start + ((end - start) * i) / 4;
      nodes.push(svg("text", { class: "tick", x: x(t), y: H - B + 14,
                               "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" },
                     hourLabel(t)));
    }
    var lx = L + 8;
    opts.legend.forEach(function (item) {
      nodes.push(svg("rect", { class: item.cls, x: lx, y: T - 9, width: 10, height: 10 }));
      nodes.push(svg("text", { class: "legend", x: lx + 14, y: T }, item.name));
      lx += 22 + item.name.length * 5.5;
    });
    if (!hasData) {
      nodes.push(svg("text", { class: "nodata", x: W / 2, y: H / 2, "text-anchor": "middle" },
                     "No samples yet"));
    }
    fill(container, svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img",
                                 "aria-label": opts.label }, nodes));
  }

  /** A half-circle gauge: used of cap (cap 0: no limit, the arc stays empty). */
  function gauge(label, used, cap, detail, testid) {
    var r = 60, cx = 80, cy = 72;
    var frac = cap > 0 ? Math.min(1, used / cap) : 0;
    var level = cap > 0 && used >= cap ? "full" : frac >= 0.8 ? "warn" : "ok";
    var arc = function (f) {
      var a = Math.PI * (1 - f);
      return "M " + (cx - r) + " " + cy + " A " + r + " " + r + " 0 0 1 " +
        (cx + r * Math.cos(a)).toFixed(2) + " " + (cy - r * Math.sin(a)).toFixed(2);
    };
    var parts = [svg("path", { class: "arc-bg", d: arc(1), fill: "none", "stroke-width": 14 })];
    if (frac > 0) {
      parts.push(svg("path", { class: "arc " + level, d: arc(frac), fill: "none", "stroke-width": 14 }));
    }
    parts.push(svg("text", { class: "reading", x: cx, y: cy - 6, "text-anchor": "middle" }, String(used)));
    parts.push(svg("text", { class: "of", x: cx, y: cy + 12, "text-anchor": "middle" },
                   cap > 0 ? "of " + cap : "no limit"));
    return el("div", { class: "gauge", "data-testid": testid, "data-used": used, "data-cap": cap },
      el("div", { class: "label" }, label),
      svg("svg", { viewBox: "0 0 160 90", role: "img",
                   "aria-label": label + ": " + used + (cap > 0 ? " of " + cap : "") }, parts),
      detail ? el("div", { class: "detail" }, detail) : null);
  }

  window.JHLEDash = {
    cfg: cfg, el: el, svg: svg, fill: fill, emptyRow: emptyRow, api: api, getJSON: getJSON,
    notice: notice, reportChange: reportChange, poll: poll, duration: duration, when: when,
    relative: relative, toDate: toDate, barChart: barChart, lineChart: lineChart, gauge: gauge,
  };
})();
