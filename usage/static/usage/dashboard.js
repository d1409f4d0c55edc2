// Usage dashboard: draws the figures and charts, then polls the JSON endpoint and
// updates them in place (no page reload). Money arrives as exact decimal strings.
(function () {
  "use strict";
  var script = document.getElementById("dashboard-script");
  var url = script.dataset.url;
  var refreshMs = parseInt(script.dataset.refreshMs, 10) || 15000;
  var charts = {};
  var COLORS = ["#417690", "#e07a5f", "#81b29a", "#f2cc8f", "#3d405b", "#9c89b8", "#f0a6ca", "#b8bedd", "#5fa8d3", "#c1666b"];

  // Half-up rounding of a decimal string to `places`, without passing through floats.
  function roundDecimal(text, places) {
    if (/e/i.test(text)) { text = Number(text).toFixed(12); } // only tiny values come this way
    var negative = text.charAt(0) === "-";
    if (negative) { text = text.slice(1); }
    var parts = text.split(".");
    var fraction = (parts[1] || "") + "0".repeat(places + 1);
    var scaled = BigInt(parts[0] + fraction.slice(0, places));
    if (parseInt(fraction.charAt(places), 10) >= 5) { scaled += 1n; }
    var digits = scaled.toString().padStart(places + 1, "0");
    var whole = digits.slice(0, digits.length - places).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    var out = places ? whole + "." + digits.slice(digits.length - places) : whole;
    return (negative && scaled !== 0n ? "-" : "") + out;
  }

  function dollars(text) {
    return text.charAt(0) === "-" ? "-$" + text.slice(1) : "$" + text;
  }

  function show(kind, value) {
    if (value === null || value === undefined) { return "–"; }
    switch (kind) {
      case "usd": return dollars(roundDecimal(String(value), 2));
      case "usd4": return dollars(roundDecimal(String(value), 4));
      case "percent": return roundDecimal(String(value), 1) + "%";
      case "ms": return roundDecimal(String(value), 0) + " ms";
      case "int": return roundDecimal(String(value), 0);
      default: return String(value);
    }
  }

  function chart(id, config) {
    if (charts[id]) {
      charts[id].data = config.data;
      charts[id].update(0);
    } else {
      var axes = config.type === "doughnut" ? {} : { scales: { yAxes: [{ ticks: { beginAtZero: true } }] } };
      config.options = Object.assign({ animation: false, responsive: true }, axes, config.options || {});
      charts[id] = new Chart(document.getElementById(id).getContext("2d"), config);
    }
  }

  function render(data) {
    document.querySelectorAll("[data-metric]").forEach(function (el) {
      var value = data[el.dataset.metric];
      el.textContent = show(el.dataset.kind, value);
      el.dataset.value = value === null ? "" : String(value);
    });
    var tiers = data.series.requests_per_minute_by_tier;
    chart("chart-tiers", {
      type: "line",
      data: {
        labels: tiers.labels,
        datasets: [
          { label: "mini", data: tiers.mini.map(Number), borderColor: COLORS[0], fill: false },
          { label: "full", data: tiers.full.map(Number), borderColor: COLORS[1], fill: false },
        ],
      },
    });
    var daily = data.series.daily_cost;
    chart("chart-daily", {
      type: "bar",
      data: {
        labels: daily.labels,
        datasets: [
          { label: "cost $", data: daily.cost_usd.map(Number), backgroundColor: COLORS[0] },
          { label: "baseline $", data: daily.baseline_cost_usd.map(Number), backgroundColor: COLORS[3] },
        ],
      },
    });
    var layers = data.savings_by_layer;
    chart("chart-layers", {
      type: "bar",
      data: {
        labels: ["routing", "provider prompt cache", "response cache", "batch"],
        datasets: [{
          label: "saved $",
          data: [layers.routing, layers.prompt_cache, layers.response_cache, layers.batch].map(Number),
          backgroundColor: COLORS.slice(0, 4),
        }],
      },
      options: { legend: { display: false } },
    });
    chart("chart-mix", {
      type: "doughnut",
      data: {
        labels: data.category_mix.map(function (c) { return c.category; }),
        datasets: [{
          data: data.category_mix.map(function (c) { return c.requests; }),
          backgroundColor: data.category_mix.map(function (c, i) { return COLORS[i % COLORS.length]; }),
        }],
      },
    });
    var body = document.querySelector("#line-items tbody");
    body.replaceChildren.apply(body, data.cost_by_line_item.map(function (item) {
      var row = document.createElement("tr");
      row.dataset.item = item.key;
      [item.label, item.tokens === null ? "" : show("int", item.tokens), show("usd4", item.cost_usd)]
        .forEach(function (text, i) {
          var cell = document.createElement("td");
          cell.textContent = text;
          if (i === 2) { cell.dataset.value = String(item.cost_usd); }
          row.appendChild(cell);
        });
      return row;
    }));
    var total = document.getElementById("line-items-total");
    total.textContent = show("usd4", data.cost_usd);
    total.dataset.value = String(data.cost_usd);
    document.getElementById("updated-at").textContent = String(data.now).slice(11, 19);
    document.body.dataset.refreshes = String(parseInt(document.body.dataset.refreshes || "0", 10) + 1);
    document.body.dataset.chartsReady = "true";
    delete document.body.dataset.refreshError; // shown until the next good refresh only
  }

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(render)
      .catch(function (error) { document.body.dataset.refreshError = String(error); })
      .finally(function () { window.setTimeout(refresh, refreshMs); });
  }

  render(JSON.parse(document.getElementById("dashboard-initial").textContent));
  window.setTimeout(refresh, refreshMs);
})();
