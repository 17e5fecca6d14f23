// Jobs: the filtered list (keyset pages, bulk actions by filter) and one job's page.
import { api, post, query, session } from "./api.js";
import { h, table, time, duration, pre, section, announce, confirmAction } from "./dom.js";

const STATES = ["blocked", "available", "scheduled", "running", "retryable", "completed", "discarded", "cancelled"];
const FILTERS = ["state", "queue", "kind", "partition_key", "from", "to", "q"];
const PAGE = 50;

// The filter in the URL (#/jobs?state=...) as API parameters.
function filterOf(params) {
  const f = {};
  for (const k of FILTERS) if (params.get(k)) f[k] = params.get(k);
  for (const k of ["from", "to"]) {
    if (!f[k]) continue;
    const t = new Date(f[k]);
    if (Number.isNaN(t.getTime())) delete f[k]; // a hand-edited URL: ignore the bad bound
    else f[k] = t.toISOString();
  }
  return f;
}

function describe(f) {
  const parts = Object.entries(f).map(([k, v]) => `${k} = ${v}`);
  return parts.length ? parts.join(", ") : "no filter (every job)";
}

function lastError(j) {
  const e = Array.isArray(j.errors) && j.errors[j.errors.length - 1];
  return e ? String(e.error || "").slice(0, 120) : "";
}

function field(label, name, value, attrs = {}) {
  return h("label", {}, label, h("input", { name, value: value || "", ...attrs }));
}

export function jobsView(params) {
  const f = filterOf(params);
  const order = params.get("order") || "desc";
  let cursor = params.get("after") ? Number(params.get("after")) : null;
  const history = [];
  const stateSelect = h("select", { name: "state" },
    h("option", { value: "" }, "any"),
    h("option", { value: "retryable,discarded" }, "failed (retryable, discarded)"),
    STATES.map((s) => h("option", { value: s }, s)));
  stateSelect.value = params.get("state") || "";
  if (stateSelect.value !== (params.get("state") || "")) {
    stateSelect.append(h("option", { value: params.get("state") }, params.get("state")));
    stateSelect.value = params.get("state");
  }
  const orderSelect = h("select", { name: "order" },
    h("option", { value: "desc" }, "newest first"), h("option", { value: "asc" }, "oldest first"));
  orderSelect.value = order;
  const local = (k) => (params.get(k) ? params.get(k).slice(0, 16) : "");
  const form = h("form", { role: "search", "aria-label": "Filter jobs", class: "filters" },
    h("label", {}, "State", stateSelect),
    field("Queue", "queue", params.get("queue")),
    field("Kind", "kind", params.get("kind")),
    field("Partition key", "partition_key", params.get("partition_key")),
    field("From", "from", local("from"), { type: "datetime-local" }),
    field("To", "to", local("to"), { type: "datetime-local" }),
    field("Text in payload or errors (exact case)", "q", params.get("q"), { type: "search", maxlength: "200" }),
    h("label", {}, "Order", orderSelect),
    h("button", { type: "submit" }, "Apply"),
    h("a", { href: "#/jobs", class: "button" }, "Clear"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) next.set(k, v);
    if (next.get("order") === "desc") next.delete("order");
    location.hash = `#/jobs${next.toString() ? `?${next}` : ""}`;
  });

  const body = h("tbody");
  const summary = h("p", { id: "jobs-summary" });
  const prev = h("button", { type: "button", disabled: true }, "Previous page");
  const next = h("button", { type: "button", disabled: true }, "Next page");
  let nextAfter = null;
  const refresh = async () => {
    const page = await api(`/v1/jobs${query({ ...f, order, after: cursor, limit: PAGE })}`);
    nextAfter = page.next_after;
    body.replaceChildren(...page.jobs.map((j) => h("tr", { dataset: { id: j.id, state: j.state } },
      h("td", {}, h("a", { href: `#/jobs/${j.id}` }, `#${j.id}`)),
      h("td", {}, h("span", { class: `state ${j.state}` }, j.state)),
      h("td", {}, j.queue), h("td", {}, j.kind), h("td", {}, j.partition_key || ""),
      h("td", {}, `${j.attempt}/${j.max_attempts}`),
      h("td", {}, time(j.finalized_at || j.created_at)),
      h("td", { class: "error-text" }, lastError(j)))));
    summary.textContent = page.jobs.length
      ? `Showing ${page.jobs.length} jobs${history.length ? ` (page ${history.length + 1})` : ""}; filter: ${describe(f)}.`
      : `No jobs match; filter: ${describe(f)}.`;
    next.disabled = !nextAfter;
    prev.disabled = history.length === 0;
  };
  next.addEventListener("click", () => { history.push(cursor); cursor = nextAfter; refresh(); });
  prev.addEventListener("click", () => { cursor = history.pop() ?? null; refresh(); });

  const actions = session.admin ? h("div", { class: "bulk", role: "group", "aria-label": "Act on every matching job" },
    ["cancel", "retry", "delete"].map((action) => h("button", {
      type: "button", class: action === "delete" ? "danger" : "", dataset: { bulk: action },
      onclick: () => bulk(action, f, refresh),
    }, `${action[0].toUpperCase()}${action.slice(1)} all matching…`))) : null;

  const element = h("div", {},
    h("h2", {}, "Jobs"), form, actions, summary,
    table("Jobs", ["Job", "State", "Queue", "Kind", "Partition key", "Attempt", "Time", "Last error"], [body], "jobs"),
    h("div", { class: "pager" }, prev, next));
  return { element, refresh };
}

async function bulk(action, f, refresh) {
  const { count } = await api(`/v1/jobs/count${query(f)}`);
  if (count === 0) {
    announce(`No jobs match (${describe(f)}).`);
    return;
  }
  const verb = { cancel: "Cancel", retry: "Retry", delete: "Delete" }[action];
  const ok = await confirmAction(
    `${verb} ${count} job${count === 1 ? "" : "s"} matching ${describe(f)}? ` +
    (action === "delete" ? "Deleted jobs cannot be recovered. " : "") +
    "Jobs the action does not apply to are left alone.", `${verb} ${count}`);
  if (!ok) {
    announce("Nothing was changed.");
    return;
  }
  let affected = 0;
  for (;;) {
    announce(`${verb}: ${affected} of ${count} done…`);
    const out = await post("/v1/jobs/bulk", { action, filter: f, max: count - affected });
    affected += out.affected;
    if (out.done || affected >= count || out.affected === 0) break;
  }
  announce(`${verb}: ${affected} job${affected === 1 ? "" : "s"} done.`);
  await refresh();
}

function attemptsOf(j) {
  const rows = (Array.isArray(j.errors) ? j.errors : []).map((e) => {
    const secs = e.started_at && e.at ? (new Date(e.at) - new Date(e.started_at)) / 1000 : null;
    return { attempt: e.attempt, outcome: e.kind, started: e.started_at, ended: e.at, secs, worker: e.worker, error: e.error };
  });
  const last = rows.length ? rows[rows.length - 1].attempt : 0;
  if (j.attempt > last && j.attempted_at) {
    const ended = j.finalized_at;
    rows.push({
      attempt: j.attempt, outcome: j.state === "running" ? "running" : j.state, started: j.attempted_at,
      ended, secs: ended ? (new Date(ended) - new Date(j.attempted_at)) / 1000 : null, worker: j.attempted_by, error: "",
    });
  }
  return rows;
}

export function jobView(id) {
  const heading = h("h2", {}, `Job #${id}`);
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Job actions" });
  const details = h("div");
  const back = h("p", {}, h("a", { href: "#/jobs" }, "← All jobs"));
  let shownState = null;
  const act = async (label, fn) => {
    try {
      await fn();
      announce(`Job #${id}: ${label}.`);
    } catch (e) {
      announce(`Job #${id}: ${label} failed: ${e.message}`);
    }
    await refresh();
  };
  const refresh = async () => {
    const j = await api(`/v1/jobs/${id}`);
    const deps = await api(`/v1/jobs/${id}/dependencies`);
    heading.replaceChildren(`Job #${id} `, h("span", { class: `state ${j.state}`, id: "job-state" }, j.state));
    if (shownState !== j.state) {
      shownState = j.state;
      const buttons = [];
      if (session.admin) {
        if (["discarded", "cancelled", "retryable", "available"].includes(j.state)) {
          buttons.push(h("button", { type: "button", id: "retry", onclick: () => act("retried", () => post(`/v1/jobs/${id}/retry`)) }, "Retry now"));
        }
        if (!["completed", "discarded", "cancelled"].includes(j.state)) {
          buttons.push(h("button", { type: "button", id: "cancel", onclick: () => act("cancel requested", () => post(`/v1/jobs/${id}/cancel`)) }, "Cancel"));
        }
        if (j.state !== "running") {
          buttons.push(h("button", {
            type: "button", id: "delete", class: "danger", onclick: async () => {
              if (await confirmAction(`Delete job #${id}? It cannot be recovered.`, "Delete")) {
                await act("deleted", () => api(`/v1/jobs/${id}`, { method: "DELETE" }));
                location.hash = "#/jobs";
              }
            },
          }, "Delete"));
        }
      }
      actions.replaceChildren(...buttons);
    }
    const trace = j.trace_id
      ? (session.me.trace_url
        ? h("a", { href: session.me.trace_url.replace("{trace_id}", j.trace_id), rel: "noopener", target: "_blank" }, j.trace_id)
        : j.trace_id)
      : "—";
    const dl = h("dl", { class: "facts" }, [
      ["Queue", h("a", { href: `#/jobs?queue=${encodeURIComponent(j.queue)}` }, j.queue)],
      ["Kind", h("a", { href: `#/jobs?kind=${encodeURIComponent(j.kind)}` }, j.kind)],
      ["Priority", j.priority], ["Partition", j.partition], ["Partition key", j.partition_key || "—"],
      ["Unique key", j.unique_key || "—"], ["Attempts", `${j.attempt} of ${j.max_attempts}`],
      ["Created", time(j.created_at)], ["Runs at", time(j.run_at)],
      ["Latest attempt started", time(j.attempted_at)], ["Worker", j.attempted_by || "—"],
      ["Finished", time(j.finalized_at)], ["Trace", trace],
      ["Workflow", j.workflow_id ? h("a", { href: `#/workflows/${j.workflow_id}` }, `#${j.workflow_id}`) : "—"],
    ].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const attempts = attemptsOf(j);
    details.replaceChildren(
      dl,
      section("Attempts", attempts.length
        ? table("Attempts", ["Attempt", "Outcome", "Started", "Ended", "Took", "Worker", "Error"],
          attempts.map((a) => h("tr", { dataset: { attempt: a.attempt } },
            h("td", {}, a.attempt), h("td", {}, a.outcome), h("td", {}, time(a.started)), h("td", {}, time(a.ended)),
            h("td", {}, duration(a.secs)), h("td", {}, a.worker || "—"), h("td", { class: "error-text" }, a.error || ""))), "attempts")
        : h("p", {}, "Not attempted yet.")),
      j.progress ? section("Progress", pre(j.progress)) : null,
      j.output !== undefined && j.output !== null ? section("Output", pre(j.output)) : null,
      deps.length ? section("Dependencies", table("Dependencies", ["Job", "Kind", "State", "Output"],
        deps.map((d) => h("tr", {}, h("td", {}, h("a", { href: `#/jobs/${d.id}` }, `#${d.id}`)), h("td", {}, d.kind),
          h("td", {}, h("span", { class: `state ${d.state}` }, d.state)), h("td", {}, d.output === null || d.output === undefined ? "—" : JSON.stringify(d.output)))))) : null,
      section("Payload", pre(j.payload)),
      section("Metadata", pre(j.metadata)),
    );
  };
  return { element: h("div", {}, back, heading, actions, details), refresh };
}
