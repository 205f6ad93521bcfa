/* Omnijourney staff console: the little JavaScript the pages use. Everything works without it except the charts
   (each has a table beside it); no inline script anywhere (the Content-Security-Policy forbids it). */
"use strict";

document.documentElement.classList.add("js");

/* the navigation folds behind the Menu button on phones */
function setUpMenu() {
  var toggle = document.querySelector(".menu-toggle");
  var nav = document.getElementById("nav");
  if (!toggle || !nav) return;
  toggle.addEventListener("click", function () {
    var open = nav.classList.toggle("open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) {
      var first = nav.querySelector("a");
      if (first) first.focus();
    }
  });
}

/* data blocks: <script type="application/json" id="..."> (data, never executed) */
function readData(id) {
  var node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

/* the customer's cross-channel timeline: one swimlane per channel, one mark per event */
function drawTimeline() {
  var box = document.getElementById("timeline-chart");
  var data = readData("timeline-data");
  if (!box || !data || !window.Plotly) return;
  var lanes = data.lanes;
  var traces = lanes.map(function (lane) {
    return {
      type: "scatter", mode: "markers", name: lane.label,
      x: lane.t, y: lane.t.map(function () { return lane.label; }), text: lane.e,
      hovertemplate: "%{text}<br>%{x|%Y-%m-%d %H:%M} UTC<extra>" + lane.label.replace(/[<>&]/g, "") + "</extra>",
      marker: { size: 9, symbol: "line-ns-open", line: { width: 2 } },
    };
  });
  var layout = {
    height: Math.max(220, 70 + 46 * lanes.length),
    margin: { l: 110, r: 16, t: 10, b: 40 },
    showlegend: false,
    hovermode: "closest",
    xaxis: { type: "date", title: { text: "time (UTC)" }, automargin: true },
    yaxis: { type: "category", automargin: true, categoryorder: "array",
             categoryarray: lanes.map(function (l) { return l.label; }).reverse() },
    paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff",
    font: { family: "system-ui, sans-serif", color: "#1b1f24" },
  };
  // no mode bar: its icons are unlabelled links; dragging zooms and a double click resets, as in every Plotly chart
  window.Plotly.newPlot(box, traces, layout, { responsive: true, displayModeBar: false });
}

/* the analytics pages' charts: each figure was built on the server (analytics/charts.py) and sits in a JSON block
   beside its box; the table under it holds the same numbers */
function drawFigures() {
  if (!window.Plotly) return;
  var boxes = document.querySelectorAll("[data-figure]");
  for (var i = 0; i < boxes.length; i++) {
    var figure = readData(boxes[i].getAttribute("data-figure"));
    if (!figure) continue;
    // no mode bar: its icons are unlabelled links; dragging zooms and a double click resets
    window.Plotly.newPlot(boxes[i], figure.data, figure.layout, { responsive: true, displayModeBar: false });
  }
}

document.addEventListener("DOMContentLoaded", function () {
  setUpMenu();
  drawTimeline();
  drawFigures();
});
