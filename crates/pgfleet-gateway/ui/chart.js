// Small line charts as inline SVG (no library; the page's CSP allows nothing inline but
// SVG elements built here). Each chart states its latest values in text for screen readers.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

// series: [{name, values: [number], cls}], times: [Date]
export function lineChart(title, times, series, unit = "") {
  const w = 240, hgt = 64, pad = 2;
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values));
  const n = times.length;
  const x = (i) => (n <= 1 ? w / 2 : pad + (i * (w - 2 * pad)) / (n - 1));
  const y = (v) => hgt - pad - (v / max) * (hgt - 2 * pad);
  const latest = series.map((s) => `${s.name} ${fmt(s.values[s.values.length - 1])}${unit}`).join(", ");
  const desc = n ? `${title}: latest ${latest}; peak ${fmt(max)}${unit} over ${n} samples` : `${title}: no samples yet`;
  const root = svg("svg", { viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, role: "img", "aria-label": desc, class: "chart" });
  const t = svg("title", {});
  t.textContent = desc;
  root.append(t, svg("line", { x1: 0, y1: hgt - pad, x2: w, y2: hgt - pad, class: "axis" }));
  for (const s of series) {
    if (!n) continue;
    const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points, class: `line ${s.cls || ""}`, fill: "none" }));
  }
  const fig = document.createElement("figure");
  const cap = document.createElement("figcaption");
  cap.textContent = n ? `${title} — ${latest}` : `${title} — no samples yet`;
  fig.append(root, cap);
  return fig;
}

function fmt(v) {
  if (v === undefined || v === null) return "—";
  return Math.abs(v) >= 100 ? Math.round(v).toString() : (Math.round(v * 100) / 100).toString();
}
