"""The explorer page's arithmetic, in plain JavaScript with no DOM: the E step and the path interpolation.

``MATH_JS`` defines ``KML.logResponsibilities``, ``KML.pathAt`` and ``KML.tOfSigma``; it runs in a
page (``window.KML``) and under Node (``module.exports``), so the tests can hold its numbers against
the package's ``kernels.log_responsibilities`` and :func:`kmeans_limit.explorer.path_at`.
"""

MATH_JS = r"""
var KML = (function () {
  "use strict";
  var KML = {};

  // Okabe & Ito's eight colour-blind-safe colours (black kept for the centroids), then Paul Tol's
  // "muted" scheme: 16 in all, repeated above 16 clusters.
  KML.PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442",
    "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499"];

  // Log-responsibilities, the package's E step: log g_nk = log pi_k - |x_n - mu_k|^2 / (2 sigma^2) - lse_n.
  // X: flat (N*D), means: flat (K*D), weights: (K). Components of weight 0 get -Infinity. At sigma = 0
  // (or a sigma whose 1/(2 sigma^2) overflows) each row is one-hot at its nearest centroid among the
  // components of positive weight (first index on ties). Log-sum-exp: no NaN at tiny sigma.
  KML.logResponsibilities = function (X, D, means, weights, sigma) {
    var K = weights.length, N = Math.round(X.length / D), out = new Float64Array(N * K);
    var beta = 1 / (2 * sigma * sigma);
    var hard = !(sigma > 0) || !isFinite(beta);
    var logw = new Float64Array(K), d2 = new Float64Array(K), logits = new Float64Array(K);
    var k, j, n;
    for (k = 0; k < K; k++) logw[k] = weights[k] > 0 ? Math.log(weights[k]) : -Infinity;
    for (n = 0; n < N; n++) {
      var best = -1, bestD = Infinity, top = -Infinity, row = n * K;
      for (k = 0; k < K; k++) {
        var s = 0;
        for (j = 0; j < D; j++) {
          var diff = X[n * D + j] - means[k * D + j];
          s += diff * diff;
        }
        d2[k] = s;
        if (weights[k] > 0 && s < bestD) { bestD = s; best = k; }
        logits[k] = hard || !(weights[k] > 0) ? -Infinity : logw[k] - beta * s;
        if (logits[k] > top) top = logits[k];
      }
      if (hard || !(top > -Infinity)) {
        for (k = 0; k < K; k++) out[row + k] = k === best ? 0 : -Infinity;
        continue;
      }
      var sum = 0;
      for (k = 0; k < K; k++) if (logits[k] > -Infinity) sum += Math.exp(logits[k] - top);
      var lse = top + Math.log(sum);
      for (k = 0; k < K; k++) out[row + k] = logits[k] > -Infinity ? logits[k] - lse : -Infinity;
    }
    return out;
  };

  // The slider position of sigma: the level index, log-linear between levels, linear from the last
  // level down to sigma = 0 (the grid ends with 0). The same map as explorer.sigma_to_t.
  KML.tOfSigma = function (grid, sigma) {
    var last = grid.length - 1, i;
    if (!(sigma > 0)) return last;
    if (sigma >= grid[0]) return 0;
    if (sigma < grid[last - 1]) return last - sigma / grid[last - 1];
    for (i = 0; i < last - 1; i++) {
      if (grid[i] >= sigma && sigma >= grid[i + 1]) return i + Math.log(grid[i] / sigma) / Math.log(grid[i] / grid[i + 1]);
    }
    return last - 1;
  };

  // sigma, means (flat K*r) and weights (K) at slider position t, as explorer.path_at: means and
  // weights linear in t between levels; sigma geometric between levels, linear on the last stretch.
  // levels: {sigma: [L+1], means: [L+1] flat arrays, weights: [L+1] arrays}.
  KML.pathAt = function (levels, t) {
    var sig = levels.sigma, last = sig.length - 1;
    t = Math.min(Math.max(t, 0), last);
    var i = Math.min(Math.floor(t), last - 1), s = t - i;
    var sigma = i + 1 === last ? (1 - s) * sig[i] : Math.pow(sig[i], 1 - s) * Math.pow(sig[i + 1], s);
    if (s === 0) return { sigma: sigma, means: levels.means[i], weights: levels.weights[i] };
    return { sigma: sigma, means: KML.mix(levels.means[i], levels.means[i + 1], s),
      weights: KML.mix(levels.weights[i], levels.weights[i + 1], s) };
  };

  KML.mix = function (a, b, s) {
    var out = new Float64Array(a.length);
    for (var i = 0; i < a.length; i++) out[i] = (1 - s) * a[i] + s * b[i];
    return out;
  };

  // Nested arrays of numbers to one flat Float64Array.
  KML.flat = function (nested) {
    var out = [];
    (function walk(v) { if (Array.isArray(v)) v.forEach(walk); else out.push(v); })(nested);
    return Float64Array.from(out);
  };

  if (typeof module !== "undefined" && module.exports) module.exports = KML;
  return KML;
})();
"""
