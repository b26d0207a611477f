// Draws the admin dashboard's charts (templates/admin/governance/index.html) with the
// vendored Chart.js. Each canvas names the json_script element holding its figures, which
// the table beside the chart shows too. No inline script, so a strict CSP can forbid them.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  if (typeof window.Chart === "undefined") {
    return; // the tables still say everything
  }
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source) {
      return;
    }
    var spec = JSON.parse(source.textContent);
    var percent = function (value) {
      return Math.round(value * 100) + " %";
    };
    new window.Chart(canvas, {
      type: spec.kind,
      data: {
        labels: spec.labels,
        datasets: spec.series.map(function (series) {
          return { label: series.name, data: series.values, spanGaps: false };
        }),
      },
      options: {
        maintainAspectRatio: false,
        animation: false,
        scales: {
          y: spec.percent
            ? { min: 0, max: 1, ticks: { callback: percent } }
            : { beginAtZero: true },
        },
        plugins: {
          tooltip: {
            callbacks: spec.percent
              ? {
                  label: function (context) {
                    return context.dataset.label + ": " + percent(context.parsed.y);
                  },
                }
              : {},
          },
        },
      },
    });
  });
});
