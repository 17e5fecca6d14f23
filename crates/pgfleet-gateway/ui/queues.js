// Queues: counts, lag, throughput and failure rate now and over the last hour (small
// charts), pause and resume, flow limits, and the periodic schedules.
import { api, post, session } from "./api.js";
import { h, table, time, duration, section, announce } from "./dom.js";
import { lineChart } from "./chart.js";

function limitsText(l) {
  if (!l) return "—";
  const rate = (r) => `${r.per_second}/s${r.burst ? ` (burst ${r.burst})` : ""}`;
  const parts = [];
  if (l.concurrency) parts.push(`${l.concurrency} at once`);
  if (l.key_concurrency) parts.push(`${l.key_concurrency} per key`);
  if (l.rate) parts.push(`rate ${rate(l.rate)}`);
  if (l.key_rate) parts.push(`per key ${rate(l.key_rate)}`);
  if (l.fair) parts.push("fair across keys");
  return parts.length ? parts.join(", ") : "—";
}

function failureRate(completed, discarded) {
  const total = completed + discarded;
  return total ? (100 * discarded) / total : 0;
}

export function queuesView() {
  const body = h("tbody");
  const charts = h("div", { class: "charts" });
  const schedules = h("tbody");
  const refresh = async () => {
    const [queues, scheds] = await Promise.all([api("/v1/queues"), api("/v1/schedules")]);
    body.replaceChildren(...queues.map((q) => h("tr", { dataset: { queue: q.name, paused: q.paused } },
      h("th", { scope: "row" }, h("a", { href: `#/jobs?queue=${encodeURIComponent(q.name)}` }, q.name)),
      h("td", {}, q.available), h("td", {}, q.running), h("td", {}, q.retryable), h("td", {}, q.scheduled),
      h("td", {}, q.blocked), h("td", {}, duration(Number(q.oldest_available_age_secs))),
      h("td", {}, (q.completed_last_minute / 60).toFixed(1)),
      h("td", {}, `${failureRate(q.completed_last_minute, q.discarded_last_minute).toFixed(1)} %`),
      h("td", {}, limitsText(q.limits)),
      h("td", { class: "paused-cell" }, q.paused ? "paused" : "running"),
      session.admin ? h("td", {}, h("button", {
        type: "button", dataset: { action: q.paused ? "resume" : "pause", queue: q.name },
        "aria-label": `${q.paused ? "Resume" : "Pause"} queue ${q.name}`,
        onclick: async (e) => {
          e.target.disabled = true;
          const verb = q.paused ? "resume" : "pause";
          await post(`/v1/queues/${encodeURIComponent(q.name)}/${verb}`);
          announce(`Queue ${q.name} ${q.paused ? "resumed" : "paused"}.`);
          await refresh();
        },
      }, q.paused ? "Resume" : "Pause")) : null)));
    const histories = await Promise.all(queues.map((q) => api(`/v1/queues/${encodeURIComponent(q.name)}/history?minutes=60`)));
    charts.replaceChildren(...queues.map((q, i) => {
      const s = histories[i];
      const t = s.map((p) => new Date(p.at));
      return h("div", { class: "queue-charts", dataset: { queue: q.name } }, h("h4", {}, q.name),
        lineChart(`${q.name} depth`, t, [
          { name: "runnable", values: s.map((p) => p.available + p.retryable), cls: "a" },
          { name: "running", values: s.map((p) => p.running), cls: "b" },
          { name: "scheduled", values: s.map((p) => p.scheduled), cls: "c" }]),
        lineChart(`${q.name} lag`, t, [{ name: "lag", values: s.map((p) => p.lag_seconds), cls: "a" }], " s"),
        lineChart(`${q.name} throughput`, t, [{ name: "done/s", values: s.map((p) => p.completed_last_min / 60), cls: "b" }]),
        lineChart(`${q.name} failure rate`, t, [{ name: "failed", values: s.map((p) => failureRate(p.completed_last_min, p.discarded_last_min)), cls: "d" }], " %"));
    }));
    schedules.replaceChildren(...scheds.map((s) => h("tr", { dataset: { schedule: s.name } },
      h("th", { scope: "row" }, s.name), h("td", {}, h("code", {}, s.spec)), h("td", {}, s.timezone), h("td", {}, s.queue),
      h("td", {}, s.kind), h("td", {}, time(s.next_run_at)), h("td", {}, time(s.last_run_at)),
      h("td", {}, s.last_job_id ? h("a", { href: `#/jobs/${s.last_job_id}` }, `#${s.last_job_id} ${s.last_job_state || ""}`) : "—"),
      h("td", {}, s.paused ? "paused" : "active"))));
  };
  const headers = ["Queue", "Runnable", "Running", "Retryable", "Scheduled", "Blocked", "Lag", "Done/s (1 min)", "Failure rate (1 min)", "Limits", "State"];
  if (session.admin) headers.push("Action");
  const element = h("div", {}, h("h2", {}, "Queues"),
    table("Queues", headers, [body], "queues"),
    section("Last hour", h("p", { class: "help" }, "Sampled every 10 s while a worker runs."), charts),
    section("Schedules", table("Schedules", ["Schedule", "Spec", "Zone", "Queue", "Kind", "Next run", "Last run", "Last job", "State"], [schedules], "schedules")));
  return { element, refresh };
}
