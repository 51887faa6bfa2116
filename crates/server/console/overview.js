// The overview: what the server did over the last hour and day (GET /v1/overview, the numbers
// /metrics serves), as totals and bar charts.

import { el, svg } from "/console/dom.js";

const WIDTH = 560;
const HEIGHT = 120;

// Bars of `key` per bucket, `over` (a part of it, e.g. throttled requests) drawn over them.
function chart(id, title, buckets, key, over, format) {
  const most = Math.max(1e-9, ...buckets.map((b) => b[key]));
  const step = WIDTH / buckets.length;
  const root = svg("svg", { id, class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT + 16}`, role: "img", "aria-label": title });
  root.append(svg("line", { x1: 0, y1: HEIGHT, x2: WIDTH, y2: HEIGHT, class: "axis" }));
  buckets.forEach((bucket, i) => {
    const h = (HEIGHT * bucket[key]) / most;
    const bar = svg("rect", { x: i * step + 0.5, y: HEIGHT - h, width: Math.max(1, step - 1), height: h, class: "bar" });
    const tip = svg("title");
    tip.textContent = `${new Date(bucket.start).toLocaleTimeString()}: ${format(bucket[key])}${over ? ` (${format(bucket[over])})` : ""}`;
    bar.append(tip);
    root.append(bar);
    if (over && bucket[over]) {
      const part = (HEIGHT * bucket[over]) / most;
      root.append(svg("rect", { x: i * step + 0.5, y: HEIGHT - part, width: Math.max(1, step - 1), height: part, class: "bar-over" }));
    }
  });
  const peak = svg("text", { x: 2, y: 10, class: "peak" });
  peak.textContent = format(most < 1e-6 ? 0 : most);
  root.append(peak);
  return el("figure", { class: "chart-box" }, el("figcaption", { text: title }), root);
}

const integer = (n) => Math.round(n).toLocaleString();
const dollars = (n) => `$${n.toFixed(4)}`;

function totals(t, sum) {
  return el("div", { class: "kv" },
    el("span", { text: t("overview.requests") }), el("span", { class: "requests", text: `${integer(sum.requests)} (${integer(sum.throttles)})` }),
    el("span", { text: t("exec.tokens") }), el("span", { text: `${integer(sum.inputTokens)} / ${integer(sum.outputTokens)}` }),
    el("span", { text: t("exec.cost") }), el("span", { text: dollars(sum.costUsd) }),
    el("span", { text: t("overview.units") }), el("span", { class: "units", text: `${integer(sum.unitsSucceeded)} ✓ · ${integer(sum.unitsFailed)} ✗` }),
    el("span", { text: t("overview.executions") }), el("span", { text: `${integer(sum.executionsSucceeded)} ✓ · ${integer(sum.executionsFailed)} ✗` }));
}

// One window (the hour or the day): its totals and charts.
export function windowCard(id, title, series, t) {
  const b = series.buckets;
  return el("section", { class: "card", id },
    el("h2", { text: title }), totals(t, series.sum),
    el("div", { class: "charts" },
      chart(`${id}-requests`, t("overview.requestsChart"), b, "requests", "throttles", integer),
      chart(`${id}-tokens`, t("overview.tokensChart"), b.map((x) => ({ ...x, tokens: x.inputTokens + x.outputTokens })), "tokens", "outputTokens", integer),
      chart(`${id}-cost`, t("exec.cost"), b, "costUsd", null, dollars),
      chart(`${id}-units`, t("overview.unitsChart"), b.map((x) => ({ ...x, units: x.unitsSucceeded + x.unitsFailed })), "units", "unitsFailed", integer)));
}
