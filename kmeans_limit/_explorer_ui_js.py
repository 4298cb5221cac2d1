"""The explorer page's drawing and controls, in plain JavaScript (canvas for the points, SVG for the curves)."""

UI_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("kml-data").textContent);
  var SUB = 20;  // slider steps per level
  var L = D.levels.sigma.length - 1;  // index of the sigma = 0 end
  var K = D.meta.n_clusters, R = D.meta.math_dim;
  var levels = { sigma: D.levels.sigma, means: D.levels.means.map(KML.flat), weights: D.levels.weights };
  var drawMeans = D.draw.means.map(KML.flat);
  var points = KML.flat(D.points), xy = D.draw.points;
  var rgb = KML.PALETTE.map(function (h) { return [1, 3, 5].map(function (i) { return parseInt(h.substr(i, 2), 16); }); });
  var colourOf = function (k) { return KML.PALETTE[k % KML.PALETTE.length]; };
  var $ = function (id) { return document.getElementById(id); };
  var fmt = function (v, p) { return v === 0 ? "0" : Number(v).toPrecision(p || 3); };
  var short = function (v) { return String(Number(Number(v).toPrecision(2))); };
  var state = { t: 0, playing: false, lastFrame: null, gamma: null, pixels: null };
  var SVGNS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent, text) {
    var node = document.createElementNS(SVGNS, name);
    for (var a in attrs) node.setAttribute(a, attrs[a]);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function extent(values, pad) {
    var lo = Infinity, hi = -Infinity;
    values.forEach(function (v) { if (isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    var mag = Math.max(Math.abs(lo), Math.abs(hi));
    if (!(hi - lo > 1e-9 * mag)) { var half = mag > 0 ? 0.1 * mag : 1; lo -= half; hi += half; }  // one value
    var p = (hi - lo) * (pad || 0.05);
    return [lo - p, hi + p];
  }

  function niceTicks(lo, hi, n) {
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
    [1, 2, 5, 10].some(function (m) { if ((hi - lo) / (step * m) <= n) { step *= m; return true; } return false; });
    var out = [];
    var first = Math.ceil(lo / step);
    for (var i = 0; i <= 2 * n + 2 && (first + i) * step <= hi + 1e-12 * step; i++) {
      var v = (first + i) * step;
      out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return out;
  }

  // ---- the scatter: points coloured by responsibilities, centroids -------------------------
  var canvas = $("scatter"), ctx = canvas.getContext("2d");
  var allX = xy.map(function (p) { return p[0]; }), allY = xy.map(function (p) { return p[1]; });
  drawMeans.forEach(function (m) { for (var k = 0; k < K; k++) { allX.push(m[2 * k]); allY.push(m[2 * k + 1]); } });
  var ex = extent(allX), ey = extent(allY);
  var margin = { l: 70, r: 20, t: 20, b: 60 };

  function sizeCanvas(c) {
    var ratio = window.devicePixelRatio || 1, w = c.clientWidth || 640, h = c.clientHeight || 560;
    c.width = Math.round(w * ratio); c.height = Math.round(h * ratio);
    c.getContext("2d").setTransform(ratio, 0, 0, ratio, 0, 0);
    return { w: w, h: h };
  }
  var box = sizeCanvas(canvas);
  var sx = function (v) { return margin.l + (v - ex[0]) / (ex[1] - ex[0]) * (box.w - margin.l - margin.r); };
  var sy = function (v) { return box.h - margin.b - (v - ey[0]) / (ey[1] - ey[0]) * (box.h - margin.t - margin.b); };

  function axes(c, g, names) {
    g.strokeStyle = "#444"; g.fillStyle = "#222"; g.lineWidth = 1; g.font = "16px sans-serif";
    g.strokeRect(margin.l, margin.t, box.w - margin.l - margin.r, box.h - margin.t - margin.b);
    g.textAlign = "center";
    niceTicks(ex[0], ex[1], 6).forEach(function (v) { g.fillText(fmt(v, 3), sx(v), box.h - margin.b + 22); });
    g.fillText(names[0], (margin.l + box.w - margin.r) / 2, box.h - 12);
    g.textAlign = "right";
    niceTicks(ey[0], ey[1], 6).forEach(function (v) { g.fillText(fmt(v, 3), margin.l - 8, sy(v) + 5); });
    g.save(); g.translate(18, (margin.t + box.h - margin.b) / 2); g.rotate(-Math.PI / 2); g.textAlign = "center";
    g.fillText(names[1], 0, 0); g.restore();
  }

  function drawPoints(g, colours, centroids, weights) {
    g.clearRect(0, 0, box.w, box.h);
    axes(null, g, D.meta.axis_names);
    var r = D.meta.n_drawn > 2000 ? 2.5 : 4;
    for (var n = 0; n < xy.length; n++) {
      g.fillStyle = colours[n];
      g.beginPath(); g.arc(sx(xy[n][0]), sy(xy[n][1]), r, 0, 2 * Math.PI); g.fill();
    }
    for (var k = 0; k < K; k++) {
      if (!(weights[k] > 0)) continue;
      var cx = sx(centroids[2 * k]), cy = sy(centroids[2 * k + 1]);
      g.fillStyle = colourOf(k); g.strokeStyle = "#000"; g.lineWidth = 2.5;
      g.beginPath(); g.moveTo(cx, cy - 11); g.lineTo(cx + 11, cy); g.lineTo(cx, cy + 11); g.lineTo(cx - 11, cy); g.closePath();
      g.fill(); g.stroke();
      if (K <= 20) { g.fillStyle = "#000"; g.font = "bold 15px sans-serif"; g.textAlign = "left"; g.fillText(String(k + 1), cx + 13, cy - 9); }
    }
  }

  function blend(gammaRow) {
    var c = [0, 0, 0];
    for (var k = 0; k < K; k++) {
      var g = gammaRow[k];
      if (g > 0) for (var i = 0; i < 3; i++) c[i] += g * rgb[k % rgb.length][i];
    }
    return c.map(Math.round);
  }

  // ---- the curves: bifurcation diagram and free energy, against the slider position t ---------
  var curveBox = { w: 620, h: 300, l: 80, r: 20, t: 20, b: 56 };
  var tx = function (t) { return curveBox.l + t / L * (curveBox.w - curveBox.l - curveBox.r); };
  var cursors = [];

  function sigmaTicks() {
    var out = [], sig0 = levels.sigma[0], end = levels.sigma[L - 1], lastX = -Infinity;
    for (var e = Math.ceil(Math.log10(sig0)); e >= Math.floor(Math.log10(end)) - 1; e--) {
      [5, 2, 1].forEach(function (m) {
        var s = m * Math.pow(10, e - 1);
        if (s <= sig0 && s >= end) out.push(s);
      });
    }
    out.sort(function (a, b) { return b - a; });
    var kept = [];
    out.forEach(function (s) { var x = tx(KML.tOfSigma(levels.sigma, s)); if (x - lastX >= 48 && x <= tx(L) - 36) { kept.push(s); lastX = x; } });
    return kept;
  }

  function frame(svg, yRange, yLabel) {
    svg.setAttribute("viewBox", "0 0 " + curveBox.w + " " + curveBox.h);
    var ys = function (v) { return curveBox.h - curveBox.b - (v - yRange[0]) / (yRange[1] - yRange[0]) * (curveBox.h - curveBox.t - curveBox.b); };
    el("rect", { x: curveBox.l, y: curveBox.t, width: curveBox.w - curveBox.l - curveBox.r, height: curveBox.h - curveBox.t - curveBox.b, fill: "none", stroke: "#444" }, svg);
    sigmaTicks().forEach(function (s) {
      var x = tx(KML.tOfSigma(levels.sigma, s));
      el("line", { x1: x, x2: x, y1: curveBox.h - curveBox.b, y2: curveBox.h - curveBox.b + 6, stroke: "#444" }, svg);
      el("text", { x: x, y: curveBox.h - curveBox.b + 24, "text-anchor": "middle", "class": "tick" }, svg, short(s));
    });
    el("text", { x: tx(L), y: curveBox.h - curveBox.b + 24, "text-anchor": "middle", "class": "tick" }, svg, "0");
    el("text", { x: (curveBox.l + curveBox.w - curveBox.r) / 2, y: curveBox.h - 8, "text-anchor": "middle", "class": "label" }, svg, "σ (log scale, falling to the right; last stretch linear to σ = 0)");
    niceTicks(yRange[0], yRange[1], 5).forEach(function (v) {
      el("text", { x: curveBox.l - 8, y: ys(v) + 5, "text-anchor": "end", "class": "tick" }, svg, fmt(v, 3));
    });
    var lab = el("text", { x: 0, y: 0, "text-anchor": "middle", "class": "label", transform: "translate(18," + ((curveBox.t + curveBox.h - curveBox.b) / 2) + ") rotate(-90)" }, svg, yLabel);
    lab.setAttribute("class", "label");
    return ys;
  }

  function marks(svg, withLabels) {
    var top = curveBox.t, bottom = curveBox.h - curveBox.b, lastX = -Infinity;
    D.splits.split_sigma.forEach(function (s, i) {
      var x = tx(KML.tOfSigma(levels.sigma, s));
      var line = el("line", { x1: x, x2: x, y1: top, y2: bottom, stroke: "#777", "stroke-dasharray": "5 4", "class": "split" }, svg);
      el("title", {}, line, "split " + (i + 1) + ": component " + (i + 2) + " born from " + (D.splits.parents[i + 1] + 1) + " at σ = " + fmt(s, 4) + " (critical σ = √λmax = " + fmt(D.splits.critical_sigma[i], 4) + ")");
      if (withLabels && x - lastX >= 56) { el("text", { x: x + 3, y: top + 16, "class": "mark" }, svg, "split"); lastX = x; }
    });
    var star = D.fit.sigma_star;
    if (star <= levels.sigma[0] && star >= levels.sigma[L - 1]) {
      var xs = tx(KML.tOfSigma(levels.sigma, star));
      var ls = el("line", { x1: xs, x2: xs, y1: top, y2: bottom, stroke: "#000", "stroke-dasharray": "2 3" }, svg);
      el("title", {}, ls, "σ* = √(J/(N·D)) = " + fmt(star, 4));
      if (withLabels) el("text", { x: xs + 3, y: bottom - 8, "class": "mark" }, svg, "σ*");
    }
  }

  function cursor(svg) {
    var c = el("line", { x1: 0, x2: 0, y1: curveBox.t, y2: curveBox.h - curveBox.b, stroke: "#C00", "stroke-width": 2.5 }, svg);
    cursors.push(c);
  }

  function bifurcation() {
    var svg = $("bifurcation");
    var values = [];
    drawMeans.forEach(function (m) { for (var k = 0; k < K; k++) values.push(m[2 * k]); });
    var ys = frame(svg, extent(values), "centroid: " + D.meta.axis_names[0]);
    marks(svg, true);
    for (var k = K - 1; k >= 0; k--) {
      var pts = [];
      for (var l = 0; l <= L; l++) pts.push(tx(l).toFixed(1) + "," + ys(drawMeans[l][2 * k]).toFixed(1));
      var line = el("polyline", { points: pts.join(" "), fill: "none", stroke: colourOf(k), "stroke-width": 3 }, svg);
      el("title", {}, line, "component " + (k + 1));
      el("circle", { cx: tx(L), cy: ys(drawMeans[L][2 * k]), r: 5, fill: colourOf(k), stroke: "#000" }, svg);
    }
    cursor(svg);
  }

  function freeEnergy() {
    var svg = $("free-energy"), F = D.curve.free_energy, J = D.fit.mean_inertia;
    // Above the first split F grows like σ² log σ²: the axis stops at twice the one-cluster inertia
    // (the total variance), so that the approach to J/N stays visible; the rest is clipped and said.
    var cap = Math.max(2 * D.fit.total_variance, 1.5 * J), range = extent(F.concat([J]).filter(function (f) { return f <= cap; }));
    var ys = frame(svg, range, "−2σ² log p(X) / N");
    var clip = el("clipPath", { id: "fe-clip" }, el("defs", {}, svg));
    el("rect", { x: curveBox.l, y: curveBox.t, width: curveBox.w - curveBox.l - curveBox.r, height: curveBox.h - curveBox.t - curveBox.b }, clip);
    if (Math.max.apply(null, F) > range[1]) el("text", { x: curveBox.l + 8, y: curveBox.t + 18, "class": "mark" }, svg, "↑ up to " + fmt(Math.max.apply(null, F), 3) + " at σ = " + fmt(levels.sigma[0], 3));
    marks(svg, false);
    var yJ = ys(J);
    el("line", { x1: curveBox.l, x2: tx(L), y1: yJ, y2: yJ, stroke: "#000", "stroke-dasharray": "8 5" }, svg);
    el("text", { x: tx(L) - 6, y: yJ - 8, "text-anchor": "end", "class": "mark" }, svg, "J/N = " + fmt(J, 4) + " at σ = 0");
    var pts = F.map(function (f, l) { return tx(l).toFixed(1) + "," + ys(f).toFixed(1); });
    el("polyline", { points: pts.join(" "), fill: "none", stroke: "#0072B2", "stroke-width": 3, "clip-path": "url(#fe-clip)" }, svg);
    el("line", { x1: tx(L - 1), x2: tx(L), y1: ys(F[L - 1]), y2: yJ, stroke: "#0072B2", "stroke-width": 3, "stroke-dasharray": "3 3" }, svg);
    el("circle", { cx: tx(L), cy: yJ, r: 6, fill: "#0072B2", stroke: "#000" }, svg);
    cursor(svg);
  }

  // ---- rendering at a slider position --------------------------------------------------------
  function render(t) {
    state.t = t = Math.min(Math.max(t, 0), L);
    var p = KML.pathAt(levels, t);
    var m = KML.pathAt({ sigma: levels.sigma, means: drawMeans, weights: levels.weights }, t).means;
    var lg = KML.logResponsibilities(points, R, p.means, p.weights, p.sigma);
    var N = xy.length, colours = new Array(N), labels = new Array(N), digest = 0, maxMean = 0;
    state.gamma = lg;
    for (var n = 0; n < N; n++) {
      var row = [], best = 0;
      for (var k = 0; k < K; k++) { row.push(Math.exp(lg[n * K + k])); if (row[k] > row[best]) best = k; }
      var c = blend(row);
      colours[n] = "rgb(" + c.join(",") + ")";
      labels[n] = best; maxMean += row[best] / N; digest = (digest * 31 + c[0] * 7 + c[1] * 3 + c[2]) % 1000000007;
    }
    drawPoints(ctx, colours, m, p.weights);
    cursors.forEach(function (c) { c.setAttribute("x1", tx(t)); c.setAttribute("x2", tx(t)); });
    $("slider").value = Math.round(t * SUB);
    var i = Math.min(Math.round(t), L - 1), born = p.weights.filter(function (w) { return w > 0; }).length;
    $("readout").textContent = t >= L ? "σ = 0: hard k-means (Lloyd's fixed point), J/N = " + fmt(D.fit.mean_inertia, 4)
      : "σ = " + fmt(p.sigma, 3) + "   ·   −2σ² log p(X)/N ≈ " + fmt(D.curve.free_energy[i], 4) + "   ·   entropy " + fmt(D.curve.entropy[i], 3) + " nats   ·   " + born + " of " + K + " centroids born";
    $("kml-state").textContent = JSON.stringify({ t: t, sigma: p.sigma, labels: labels, mean_max_gamma: maxMean, digest: digest });
  }

  // ---- controls: slider, play, keyboard, hash, hover -----------------------------------------
  var slider = $("slider");
  slider.max = L * SUB;
  slider.addEventListener("input", function () { stop(); render(slider.value / SUB); });
  function stop() { state.playing = false; $("play").textContent = "▶ Play"; }
  function tick(now) {
    if (!state.playing) return;
    if (state.lastFrame !== null) render(state.t + (now - state.lastFrame) / 1000 * Math.max(L / 12, 2));
    state.lastFrame = now;
    if (state.t >= L) { stop(); return; }
    window.requestAnimationFrame(tick);
  }
  function play() {
    if (state.playing) { stop(); return; }
    if (state.t >= L) render(0);
    state.playing = true; state.lastFrame = null; $("play").textContent = "❚❚ Pause";
    window.requestAnimationFrame(tick);
  }
  $("play").addEventListener("click", play);
  document.addEventListener("keydown", function (ev) {
    var onButton = ev.target && ev.target.tagName === "BUTTON";
    var step = ev.shiftKey ? 0.1 : 1, keys = { ArrowRight: step, ArrowDown: step, ArrowLeft: -step, ArrowUp: -step, PageDown: 10, PageUp: -10 };
    if (ev.key in keys) { stop(); render(state.t + keys[ev.key]); ev.preventDefault(); }
    else if (ev.key === "Home") { stop(); render(0); ev.preventDefault(); }
    else if (ev.key === "End") { stop(); render(L); ev.preventDefault(); }
    else if ((ev.key === " " || ev.key === "p") && !onButton) { play(); ev.preventDefault(); }
  });

  var tip = $("tooltip");
  function showTip(ev, html) { tip.innerHTML = html; tip.style.left = ev.pageX + 14 + "px"; tip.style.top = ev.pageY + 14 + "px"; tip.hidden = false; }
  canvas.addEventListener("mousemove", function (ev) {
    var rect = canvas.getBoundingClientRect(), mx = ev.clientX - rect.left, my = ev.clientY - rect.top, best = -1, bd = 144;
    for (var n = 0; n < xy.length; n++) { var dx = sx(xy[n][0]) - mx, dy = sy(xy[n][1]) - my; if (dx * dx + dy * dy < bd) { bd = dx * dx + dy * dy; best = n; } }
    if (best < 0) { tip.hidden = true; return; }
    var gam = [];
    for (var k = 0; k < K; k++) gam.push([k, Math.exp(state.gamma[best * K + k])]);
    gam.sort(function (a, b) { return b[1] - a[1]; });
    showTip(ev, "point (" + fmt(xy[best][0], 4) + ", " + fmt(xy[best][1], 4) + ")<br>responsibilities: " + gam.slice(0, 4).map(function (g) {
      return '<span style="color:' + colourOf(g[0]) + '">■</span> ' + (g[0] + 1) + ": " + g[1].toFixed(3); }).join(", "));
  });
  canvas.addEventListener("mouseleave", function () { tip.hidden = true; });
  ["bifurcation", "free-energy"].forEach(function (id) {
    var svg = $(id);
    var at = function (ev) { var r = svg.getBoundingClientRect(); return Math.min(Math.max(((ev.clientX - r.left) * curveBox.w / r.width - curveBox.l) / (curveBox.w - curveBox.l - curveBox.r) * L, 0), L); };
    svg.addEventListener("mousemove", function (ev) {
      var t = at(ev), i = Math.min(Math.round(t), L);
      showTip(ev, i >= L ? "σ = 0: J/N = " + fmt(D.fit.mean_inertia, 5) : "level " + (i + 1) + ": σ = " + fmt(levels.sigma[i], 4) + "<br>−2σ² log p(X)/N = " + fmt(D.curve.free_energy[i], 5) + "<br>entropy = " + fmt(D.curve.entropy[i], 4) + " nats");
    });
    svg.addEventListener("mouseleave", function () { tip.hidden = true; });
    svg.addEventListener("click", function (ev) { stop(); render(at(ev)); });
  });

  function fromHash() {
    var params = {};
    window.location.hash.replace(/^#/, "").split("&").forEach(function (part) { var kv = part.split("="); if (kv[0]) params[kv[0]] = decodeURIComponent(kv[1] || ""); });
    if ("probe" in params) {
      var probe = params.probe.split(",").map(Number).map(function (s) {
        var t = KML.tOfSigma(levels.sigma, s), p = KML.pathAt(levels, t);
        var lg = Array.from(KML.logResponsibilities(points, R, p.means, p.weights, p.sigma)).map(function (v) { return isFinite(v) ? v : null; });
        return { sigma: s, t: t, path_sigma: p.sigma, means: Array.from(p.means), weights: Array.from(p.weights), log_gamma: lg };
      });
      $("kml-probe").textContent = JSON.stringify(probe);
    }
    if ("sigma" in params) render(KML.tOfSigma(levels.sigma, Number(params.sigma)));
    else if ("t" in params) render(Number(params.t));
  }
  window.addEventListener("hashchange", fromHash);

  // ---- the side-by-side: annealed versus Lloyd from a bad start ------------------------------
  function comparison() {
    if (!D.compare) { $("compare").hidden = true; return; }
    var pairs = [["annealed", D.fit.labels, drawMeans[L], "annealed, then Lloyd at σ = 0: J/N = " + fmt(D.fit.mean_inertia, 4)],
      ["bad-start", D.compare.labels, KML.flat(D.compare.means), "Lloyd from the worst of " + D.compare.n_starts + " k-means++ starts: J/N = " + fmt(D.compare.mean_inertia, 4)]];
    pairs.forEach(function (p) {
      var c = $("cmp-" + p[0]), g = c.getContext("2d"), saved = box;
      box = sizeCanvas(c);
      drawPoints(g, p[1].map(colourOf), p[2], new Array(K).fill(1));
      box = saved;
      $("cmp-" + p[0] + "-title").textContent = p[3];
    });
    $("cmp-note").textContent = D.compare.n_reached === D.compare.n_starts ? "Here every one of the " + D.compare.n_starts + " starts reached the annealed J."
      : D.compare.n_reached + " of the " + D.compare.n_starts + " k-means++ starts reached the annealed J; the worst is shown.";
  }

  // ---- legend and header ---------------------------------------------------------------------
  var legend = $("legend");
  for (var k = 0; k < Math.min(K, 16); k++) {
    var item = document.createElement("span");
    item.className = "swatch"; item.innerHTML = '<i style="background:' + colourOf(k) + '"></i>' + (k + 1);
    legend.appendChild(item);
  }
  if (K > 16) legend.appendChild(document.createTextNode(" (colours repeat every 16 components; hover a point for its numbers)"));
  $("subtitle").textContent = "N = " + D.meta.n_samples + " points, D = " + D.meta.n_features + ", K = " + K + ", " + L + " σ levels, then σ = 0." +
    (D.meta.n_drawn < D.meta.n_samples ? " Drawn: a random subsample of " + D.meta.n_drawn + " of the " + D.meta.n_samples + " points (above " + D.meta.max_points + " points only a subsample is drawn; the curves use every point)." : "");

  bifurcation();
  freeEnergy();
  comparison();
  render(0);
  fromHash();
  $("kml-errors").textContent = JSON.stringify(window.__kmlErrors);
  document.body.setAttribute("data-ready", "1");
})();
"""
