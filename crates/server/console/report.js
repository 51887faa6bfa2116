// A report, read in the browser: its summary, sections, fields, dates, amounts and tables,
// each linked to the units it came from, and a unit's text beside its result. Built from
// report.json (the Markdown report says the same, for download); the document's own words are
// marked with its language so Japanese renders with Japanese glyphs.

import { el } from "/console/dom.js";

// Links to units: each shows that unit beside its result.
function unitLinks(units, show) {
  return units.map((index) => el("button", {
    type: "button", class: "unit-link", "data-unit": index, onclick: () => show(index), text: `#${index}`,
  }));
}

function table(headings, rows) {
  return el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))))));
}

// A unit result (whatever the unit schema asked for): its top-level keys, values as text.
function result(value, lang) {
  if (value === null || value === undefined) return el("p", { class: "muted", text: "—" });
  if (typeof value !== "object" || Array.isArray(value)) return el("pre", { lang, text: JSON.stringify(value, null, 2) });
  return el("dl", { class: "result", lang }, ...Object.entries(value).flatMap(([key, v]) => [
    el("dt", { text: key }),
    el("dd", {}, shown(v)),
  ]));
}

const scalar = (v) => v === null || ["string", "number", "boolean"].includes(typeof v);

// A value of a result: text, a list of texts, or (anything deeper) its JSON.
function shown(v) {
  if (scalar(v)) return v === null ? "—" : String(v);
  if (Array.isArray(v) && v.every(scalar)) return el("ul", {}, ...v.map((item) => el("li", { text: String(item) })));
  return el("pre", { text: JSON.stringify(v, null, 2) });
}

export function renderReport(container, report, t) {
  const lang = report.document.language || undefined;
  const viewer = el("section", { class: "card", id: "unit", "aria-live": "polite" });
  const byIndex = new Map(report.units.map((u) => [u.index, u]));
  const show = (index, initial = false) => {
    const unit = byIndex.get(index);
    if (!unit) return;
    const prev = byIndex.has(index - 1) ? el("button", { type: "button", class: "secondary", onclick: () => show(index - 1), text: "←" }) : "";
    const next = byIndex.has(index + 1) ? el("button", { type: "button", class: "secondary", onclick: () => show(index + 1), text: "→" }) : "";
    viewer.dataset.unit = String(index);
    viewer.replaceChildren(
      el("div", { class: "row" }, el("h2", { text: t("report.unit", { index }) }), prev, next,
        el("span", { class: `status ${unit.status}`, text: unit.status })),
      el("p", { lang, class: "unit-title", text: unit.title }),
      unit.error ? el("p", { class: "error", text: `${unit.error.error}: ${unit.error.cause}` }) : "",
      el("div", { class: "side-by-side" },
        el("div", {}, el("h3", { text: t("report.text") }), el("pre", { class: "unit-text", lang, text: unit.text })),
        el("div", {}, el("h3", { text: t("report.result") }), result(unit.result, lang))));
    if (initial) return;
    // Followed from a link: the unit comes into view and the keyboard goes with it.
    viewer.scrollIntoView({ block: "nearest" });
    viewer.querySelector("h2").setAttribute("tabindex", "-1");
    viewer.querySelector("h2").focus({ preventScroll: true });
  };

  const d = report.document;
  const parts = [
    el("h1", { lang, text: d.title || d.name }),
    el("section", { class: "card", id: "summary" },
      el("h2", { text: t("report.summary") }), el("p", { lang, text: report.summary || "—" }),
      el("div", { class: "kv" },
        el("span", { text: t("col.document") }), el("span", { lang, text: d.name }),
        el("span", { text: t("report.format") }), el("span", { text: `${d.format} · ${t("report.units", { n: d.unit_count })}` }),
        el("span", { text: t("exec.strategy") }), el("span", { text: report.strategy + (report.strategy_note ? ` — ${report.strategy_note}` : "") }),
        el("span", { text: t("report.model") }), el("span", { text: report.model }),
        el("span", { text: t("report.language") }), el("span", { text: d.language || "—" }),
        el("span", { text: t("exec.cost") }), el("span", { text: report.usage.cost_usd == null ? "—" : `$${report.usage.cost_usd.toFixed(4)}` }))),
  ];
  if (report.sections.length) {
    parts.push(el("section", { class: "card", id: "sections" }, el("h2", { text: t("report.sections") }),
      el("ul", {}, ...report.sections.map((s) => el("li", {}, el("span", { lang, text: s.title }), " ", unitLinks(s.units, show))))));
  }
  if (report.fields.length) {
    parts.push(el("section", { class: "card", id: "fields" }, el("h2", { text: t("report.fields") }),
      table([t("report.name"), t("report.value"), t("report.from")],
        report.fields.map((f) => [el("span", { lang, text: f.name }), el("span", { lang, text: f.value }), el("span", {}, unitLinks(f.units, show))]))));
  }
  if (report.dates.length) {
    parts.push(el("section", { class: "card", id: "dates" }, el("h2", { text: t("report.dates") }),
      table([t("report.mention"), "ISO", t("report.from")],
        report.dates.map((m) => [el("span", { lang, text: m.text }), m.iso || "—", el("span", {}, unitLinks(m.units, show))]))));
  }
  if (report.amounts.length) {
    parts.push(el("section", { class: "card", id: "amounts" }, el("h2", { text: t("report.amounts") }),
      table([t("report.mention"), t("report.value"), t("report.from")],
        report.amounts.map((m) => [el("span", { lang, text: m.text }),
          m.value == null ? "—" : `${m.value}${m.currency ? ` ${m.currency}` : ""}`, el("span", {}, unitLinks(m.units, show))]))));
  }
  if (report.tables.length) {
    parts.push(el("section", { class: "card", id: "tables" }, el("h2", { text: t("report.tables") }),
      table([t("report.title"), t("report.columns"), t("report.rows"), t("report.from")],
        report.tables.map((x) => [el("span", { lang, text: x.title || "—" }), el("span", { lang, text: x.columns.join(", ") }),
          x.row_count == null ? "—" : String(x.row_count), el("span", {}, unitLinks([x.unit], show))]))));
  }
  if (report.failed_units.length) {
    parts.push(el("section", { class: "card", id: "failed" }, el("h2", { text: t("report.failed") }),
      table([t("unit.index"), t("unit.title"), t("unit.cause")],
        report.failed_units.map((f) => [el("span", {}, unitLinks([f.index], show)), el("span", { lang, text: f.title }),
          el("span", { class: "error", text: `${f.error}: ${f.cause}` })]))));
  }
  // The report on the left, the unit it points to on the right (under it on a narrow screen).
  container.classList.add("report-layout");
  container.replaceChildren(el("div", { class: "report-main" }, ...parts), viewer);
  if (report.units.length) show(report.units[0].index, true);
}
