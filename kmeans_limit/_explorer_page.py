"""The explorer's HTML: one file, its styles and scripts inline, the data as JSON in a script element."""

from __future__ import annotations

import html

from ._explorer_math_js import MATH_JS
from ._explorer_ui_js import UI_JS

__all__ = ["render_page"]

# Errors are caught from the first script on (a syntax error in a later script fires "error" too) and
# written into #kml-errors, so a headless browser's DOM dump shows them.
ERRORS_JS = r"""
window.__kmlErrors = [];
window.__kmlError = function (message) {
  window.__kmlErrors.push(String(message));
  var node = document.getElementById("kml-errors");
  if (node) node.textContent = JSON.stringify(window.__kmlErrors);
};
window.addEventListener("error", function (ev) { window.__kmlError(ev.message || ev); });
window.addEventListener("unhandledrejection", function (ev) { window.__kmlError("unhandled rejection: " + ev.reason); });
(function () {
  var original = console.error;
  console.error = function () { window.__kmlError(Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); };
})();
"""

CSS = """
body { font-family: system-ui, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 20px; margin: 16px 24px; color: #111; background: #fff; }
h1 { font-size: 30px; margin: 0 0 4px 0; }
h2 { font-size: 22px; margin: 8px 0 4px 0; }
#subtitle { margin: 0 0 10px 0; color: #333; }
#controls { display: flex; align-items: center; gap: 16px; margin: 8px 0 12px 0; flex-wrap: wrap; }
#controls button { font-size: 22px; padding: 6px 18px; min-width: 140px; }
#slider { flex: 1 1 480px; height: 32px; accent-color: #C00; }
#readout { font-size: 22px; font-variant-numeric: tabular-nums; min-width: 40em; }
.panels { display: grid; grid-template-columns: minmax(520px, 1fr) minmax(480px, 1fr); gap: 20px; }
#scatter { width: 100%; height: 600px; display: block; border: 1px solid #ccc; }
.curves svg { width: 100%; height: auto; display: block; border: 1px solid #ccc; margin-bottom: 8px; }
svg .tick { font-size: 15px; fill: #222; }
svg .label { font-size: 16px; fill: #111; }
svg .mark { font-size: 15px; fill: #333; }
#legend { margin: 6px 0; line-height: 1.8; }
.swatch { margin-right: 12px; white-space: nowrap; }
.swatch i { display: inline-block; width: 18px; height: 18px; border: 1px solid #000; vertical-align: -3px; margin-right: 4px; }
#compare .pair { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
#compare canvas { width: 100%; height: 380px; display: block; border: 1px solid #ccc; }
#tooltip { position: absolute; background: #fffbe6; border: 1px solid #333; padding: 6px 10px; font-size: 18px; pointer-events: none; }
.keys { color: #333; font-size: 17px; }
"""

BODY = """
<pre id="kml-errors" hidden>[]</pre>
<script>{errors_js}</script>
<h1>{title}</h1>
<p id="subtitle"></p>
<p class="keys">k-means is the σ → 0 limit of the Gaussian mixture with one shared σ. Drag the slider, or use
← → (one level; Shift: a tenth), Page Up/Down (ten levels), Home/End (first level / σ = 0), Space (play).
Hover for numbers; click a curve to jump there.</p>
<div id="controls">
  <button id="play" type="button">▶ Play</button>
  <input id="slider" type="range" min="0" max="100" step="1" value="0" aria-label="sigma: from above the first split to 0">
  <output id="readout" for="slider"></output>
</div>
<div class="panels">
  <section>
    <h2>The data, coloured by their responsibilities at σ</h2>
    <canvas id="scatter" role="img" aria-label="data coloured by responsibilities"></canvas>
    <div id="legend">Colour = the responsibility-weighted mix of the component colours; ◆ = centroids.<br></div>
  </section>
  <section class="curves">
    <h2>Bifurcation diagram: centroids against σ</h2>
    <svg id="bifurcation" role="img" aria-label="bifurcation diagram"></svg>
    <h2>Free energy −2σ² log p(X)/N → J/N as σ → 0</h2>
    <svg id="free-energy" role="img" aria-label="free energy against sigma"></svg>
    <p class="keys">Dashed grey lines: the σ at which each component was born (its parent's critical σ is in the
    hover text); dotted: σ* = √(J/(N·D)). Red: the slider's σ.</p>
  </section>
</div>
<section id="compare">
  <h2>At σ = 0: the annealed fit beside Lloyd's algorithm from a bad start</h2>
  <p id="cmp-note"></p>
  <div class="pair">
    <div><p id="cmp-annealed-title"></p><canvas id="cmp-annealed"></canvas></div>
    <div><p id="cmp-bad-start-title"></p><canvas id="cmp-bad-start"></canvas></div>
  </div>
</section>
<div id="tooltip" hidden></div>
<pre id="kml-state" hidden></pre>
<pre id="kml-probe" hidden></pre>
<script type="application/json" id="kml-data">{data}</script>
<script>{math_js}</script>
<script>{ui_js}</script>
"""


def render_page(data_json: str, title: str) -> str:
    """The whole page: ``data_json`` (safe inside a script element) and the title (escaped here)."""
    body = BODY.format(
        errors_js=ERRORS_JS, title=html.escape(title), data=data_json, math_js=MATH_JS, ui_js=UI_JS
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<style>{CSS}</style>\n</head>\n<body>{body}</body>\n</html>\n"
    )
