/* Draws each dashboard chart with ECharts from the JSON next to it (built on the server
   from the table below it). Chart kinds: "line" / "bar" (series on one or two value
   axes) and "heatmap" (cohort retention). */
(function () {
  "use strict";
  // Between a label and its value in a tooltip, as the page's language writes it.
  var COLON = document.documentElement.lang.indexOf("zh") === 0 ? "：" : ": ";
  var PALETTE = ["#07c160", "#1664ff", "#ff8800", "#9254de", "#f54a45", "#13c2c2", "#faad14", "#eb2f96"];

  function format(kind, value) {
    if (value === null || value === undefined) return "—";
    if (kind === "rate") return (value * 100).toFixed(1) + "%";
    if (kind === "money") return Number(value).toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    if (kind === "days") return Number(value).toFixed(1);
    return Number(value).toLocaleString("zh-CN");
  }

  function axisLabel(kind, value) {
    if (kind === "rate") return +(value * 100).toFixed(1) + "%";
    return Number(value).toLocaleString("zh-CN", { maximumFractionDigits: 1 });
  }

  function axis(kind, position) {
    return {
      type: "value",
      position: position,
      axisLabel: { formatter: function (v) { return axisLabel(kind, v); } },
      splitLine: { show: position === "left" }
    };
  }

  function categoryLabels(labels) {
    // Few categories: every label, slanted when long; many (days, weeks): thinned out.
    if (labels.length > 16) return { hideOverlap: true };
    var longest = labels.reduce(function (n, label) { return Math.max(n, String(label).length); }, 0);
    return { interval: 0, rotate: labels.length > 6 && longest > 4 ? 30 : 0 };
  }

  function seriesChart(spec) {
    var kinds = [null, null];
    spec.series.forEach(function (s) { if (kinds[s.axis] === null) kinds[s.axis] = s.kind; });
    var yAxis = [axis(kinds[0], "left")];
    if (kinds[1] !== null) yAxis.push(axis(kinds[1], "right"));
    var byName = {};
    spec.series.forEach(function (s) { byName[s.name] = s; });
    var many = spec.series.length > 8;
    var option = {
      color: PALETTE,
      grid: { left: 56, right: kinds[1] !== null ? 56 : 20, top: many ? 64 : 36, bottom: spec.zoom ? 64 : 32, containLabel: true },
      tooltip: {
        trigger: "axis",
        valueFormatter: undefined,
        formatter: function (items) {
          var lines = [items[0].axisValueLabel], shown = {};
          items.forEach(function (item) {
            // a line's partial tail is a series of its own: one row per name
            if (item.value === null || item.value === undefined || shown[item.seriesName]) return;
            shown[item.seriesName] = true;
            var series = byName[item.seriesName];
            var value = series.below && item.value !== null ? -item.value : item.value;
            lines.push(item.marker + item.seriesName + COLON + format(series.kind, value));
          });
          return lines.join("<br>");
        }
      },
      legend: { type: "scroll", top: 0 },
      xAxis: { type: "category", data: spec.x, axisLabel: categoryLabels(spec.x) },
      yAxis: yAxis,
      series: []
    };
    // Periods the range cut or that are still running (spec.partial: their indexes) are
    // drawn apart, so that a month of two days does not read as a collapse: dashed, with
    // hollow points, for lines; pale, for bars.
    var partial = {};
    (spec.partial || []).forEach(function (i) { partial[i] = true; });
    spec.series.forEach(function (s, n) {
      var color = PALETTE[n % PALETTE.length];
      var data = s.below ? s.data.map(function (v) { return v === null ? null : -v; }) : s.data;
      var base = {
        name: s.name, type: s.as, yAxisIndex: s.axis, color: color,
        stack: spec.stack && s.as === "bar" ? "total" : undefined,
        smooth: false, connectNulls: false, showSymbol: spec.x.length <= 40, barMaxWidth: 36
      };
      if (s.as === "bar") {
        base.data = data.map(function (v, i) {
          return partial[i] && v !== null ? { value: v, itemStyle: { opacity: 0.45 } } : v;
        });
        option.series.push(base);
        return;
      }
      base.data = data.map(function (v, i) { return partial[i] ? null : v; });
      option.series.push(base);
      if (spec.partial && spec.partial.length) {
        option.series.push(Object.assign({}, base, {
          id: "partial-" + n,
          symbol: "emptyCircle",
          lineStyle: { type: "dashed" },
          data: data.map(function (v, i) {
            return partial[i] || partial[i - 1] || partial[i + 1] ? v : null;
          })
        }));
      }
    });
    if (spec.zoom) option.dataZoom = [{ type: "inside" }, { type: "slider", height: 18, bottom: 8 }];
    return option;
  }

  function heatmap(spec) {
    return {
      grid: { left: 80, right: 96, top: 16, bottom: 32 },
      tooltip: {
        formatter: function (item) {
          return spec.y[item.value[1]] + " · " + spec.x[item.value[0]] + COLON + format(spec.kind, item.value[2]);
        }
      },
      xAxis: { type: "category", data: spec.x, splitArea: { show: true } },
      yAxis: { type: "category", data: spec.y, inverse: true, splitArea: { show: true } },
      visualMap: {
        min: 0, max: spec.max, calculable: true, orient: "vertical", right: 0, top: "middle",
        inRange: { color: ["#f0faf4", "#07c160", "#035c2f"] },
        formatter: function (v) { return format(spec.kind, v); }
      },
      series: [{
        type: "heatmap",
        // Cells of a period still running or cut by the range: pale, starred.
        data: spec.data.map(function (cell) {
          var cut = (spec.partial || []).some(function (p) { return p[0] === cell[0] && p[1] === cell[1]; });
          return cut ? { value: cell, itemStyle: { opacity: 0.45 }, partial: true } : cell;
        }),
        progressive: 0, // drawn at once: progressively, a large heatmap kept rows blank
        label: { show: spec.x.length <= 14 && spec.y.length <= 30, fontSize: 10, formatter: function (item) { return format(spec.kind, item.value[2]) + (item.data.partial ? "*" : ""); } }
      }]
    };
  }

  function draw() {
    if (typeof window.echarts === "undefined") return;
    document.querySelectorAll("[data-chart]").forEach(function (element) {
      var source = document.getElementById(element.getAttribute("data-chart"));
      if (!source) return;
      var spec = JSON.parse(source.textContent);
      var chart = window.echarts.init(element);
      chart.setOption(spec.type === "heatmap" ? heatmap(spec) : seriesChart(spec));
      element.setAttribute("data-drawn", "true");
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
