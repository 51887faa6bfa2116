// The state machine drawing: what GET /v1/executions/{name}/graph lays out, drawn as SVG with
// DOM calls. Each state is coloured by its status; a Map carries a bar of its iterations (or
// child executions); an AWS SDK task shows the status it last read (a batch job's).

import { svg } from "/console/dom.js";

function text(x, y, content, attributes = {}) {
  const node = svg("text", { x, y, ...attributes });
  node.textContent = content;
  return node;
}

function progressBar(node, t) {
  const p = node.progress;
  const total = p.succeeded + p.running + p.failed + p.aborted + p.pending;
  const x = node.x + 10;
  const width = node.w - 20;
  const y = node.y + 26;
  const group = svg("g", { class: "progress" });
  group.append(svg("rect", { x, y, width, height: 8, rx: 3, class: "bar-track" }));
  let at = x;
  for (const part of ["succeeded", "running", "failed", "aborted"]) {
    if (!total || !p[part]) continue;
    const w = (width * p[part]) / total;
    group.append(svg("rect", { x: at, y, width: w, height: 8, class: `bar-${part}` }));
    at += w;
  }
  const words = t(p.children ? "graph.children" : "graph.iterations", {
    succeeded: p.succeeded, running: p.running, failed: p.failed + p.aborted, pending: p.pending,
  });
  group.append(text(x, node.y + 47, words, { class: "progress-text" }));
  return group;
}

export function describe(node, t) {
  const parts = [`${node.name}: ${t(`graph.status.${node.status}`)}`];
  if (node.type) parts.push(node.type);
  if (node.entered > 1) parts.push(t("graph.entered", { n: node.entered }));
  if (node.failures) parts.push(t("graph.failures", { n: node.failures }));
  if (node.detail) parts.push(node.detail);
  return parts.join(" · ");
}

// The drawing as an <svg>; `onSelect(node)` when a state is clicked or chosen with Enter.
export function drawGraph(view, t, onSelect) {
  const root = svg("svg", {
    id: "graph", viewBox: `0 0 ${view.width} ${view.height}`, width: view.width, height: view.height,
    role: "group", "aria-label": t("graph.title"), "data-status": view.status,
  });
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow-head" }));
  root.append(svg("defs", {}, marker));

  // Containers first (behind what they hold), then arrows, then the boxes on top.
  const containers = view.nodes.filter((n) => view.nodes.some((c) => c.parent === n.id));
  const inside = new Set(containers.map((n) => n.id));
  for (const node of containers) {
    const group = svg("g", { class: `container ${node.status}`, "data-node": node.id, "data-state": node.state, tabindex: 0, role: "button", "aria-label": describe(node, t) },
      svg("title", {}, document.createTextNode(describe(node, t))),
      svg("rect", { x: node.x, y: node.y, width: node.w, height: node.h, rx: 8 }),
      text(node.x + 10, node.y + 17, node.name + (node.distributed ? ` (${t("graph.distributed")})` : ""), { class: "name" }));
    if (node.progress) group.append(progressBar(node, t));
    root.append(group);
  }
  for (const edge of view.edges) {
    const d = edge.points.map((p, i) => `${i ? "L" : "M"} ${p[0]} ${p[1]}`).join(" ");
    const group = svg("g", { class: `edge ${edge.kind}${edge.taken ? " taken" : ""}`, "data-from": edge.from, "data-to": edge.to });
    // The whole rule on hover; on the arrow a short name, so labels of a Choice stay apart.
    if (edge.label) group.append(svg("title", {}, document.createTextNode(edge.label)));
    group.append(svg("path", { d, "marker-end": "url(#arrow)" }));
    const short = [];
    if (edge.rules.length) short.push(t("graph.rule", { n: edge.rules.join(", ") }));
    if (edge.kind === "default") short.push(t("graph.default"));
    if (edge.kind === "catch") short.push(t("graph.catch"));
    if (short.length) group.append(text(edge.labelAt[0], edge.labelAt[1], short.join(" · "), { class: "edge-label" }));
    root.append(group);
  }
  for (const node of view.nodes) {
    if (inside.has(node.id)) continue;
    const marker = node.kind !== "state";
    // A marker says which scope it starts or ends: its container's state, or "" at the top.
    const scope = marker ? (view.nodes.find((n) => n.id === node.parent) || { state: "" }).state : null;
    const group = svg("g", {
      class: `node ${node.kind} ${node.status}`, "data-node": node.id, "data-state": node.state,
      "data-marker": marker ? node.kind : null, "data-scope": scope,
      tabindex: marker ? null : 0, role: marker ? null : "button", "aria-label": describe(node, t),
    }, svg("title", {}, document.createTextNode(describe(node, t))));
    group.append(svg("rect", { x: node.x, y: node.y, width: node.w, height: node.h, rx: marker ? node.h / 2 : 5 }));
    const label = marker ? t(`graph.${node.kind}`) : node.name;
    group.append(text(node.x + node.w / 2, node.y + node.h / 2 + (node.detail ? -2 : 4), label, { "text-anchor": "middle", class: "name" }));
    if (node.detail) group.append(text(node.x + node.w / 2, node.y + node.h - 5, node.detail, { "text-anchor": "middle", class: "detail" }));
    if (node.progress) group.append(progressBar(node, t));
    root.append(group);
  }
  for (const group of root.querySelectorAll("[data-node][tabindex]")) {
    const node = view.nodes.find((n) => n.id === group.dataset.node);
    group.addEventListener("click", () => onSelect(node));
    group.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); onSelect(node); }
    });
  }
  return root;
}

// The colours' meanings, under the drawing.
export function legend(t) {
  const row = document.createElement("div");
  row.className = "legend";
  for (const status of ["notRun", "running", "succeeded", "caught", "failed", "aborted"]) {
    const item = document.createElement("span");
    item.className = `swatch ${status}`;
    item.textContent = t(`graph.status.${status}`);
    row.append(item);
  }
  return row;
}
