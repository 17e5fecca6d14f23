// A workflow or batch: its state, counts by state, and each job with what it waits for
// and its output; cancel (admin).
import { api, post, session } from "./api.js";
import { h, table, time, pre, section, announce, confirmAction } from "./dom.js";

export function workflowView(id) {
  const heading = h("h2", {}, `Workflow #${id}`);
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Workflow actions" });
  const details = h("div");
  const refresh = async () => {
    const w = await api(`/v1/workflows/${id}`);
    heading.replaceChildren(`Workflow #${id} ${w.name} `, h("span", { class: `state ${w.state}`, id: "workflow-state" }, w.state));
    actions.replaceChildren(...(session.admin && w.state === "running" ? [h("button", {
      type: "button", id: "cancel-workflow", class: "danger", onclick: async () => {
        if (await confirmAction(`Cancel workflow #${id}? Jobs that have not started are cancelled; running ones are asked to stop.`, "Cancel workflow")) {
          await post(`/v1/workflows/${id}/cancel`);
          announce(`Workflow #${id}: cancel requested.`);
          await refresh();
        }
      },
    }, "Cancel workflow")] : []));
    const link = (j) => h("a", { href: `#/jobs/${j}` }, `#${j}`);
    details.replaceChildren(
      h("dl", { class: "facts" }, [
        ["Created", time(w.created_at)], ["Cancelled", time(w.cancelled_at)],
        ["Callback", w.callback_id ? link(w.callback_id) : "—"],
        ["Jobs by state", Object.entries(w.counts).map(([s, n]) => `${s} ${n}`).join(", ") || "—"],
      ].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      section("Jobs", table("Workflow jobs", ["Job", "Kind", "State", "Waits for", "Output"],
        w.jobs.map((j) => h("tr", { dataset: { id: j.id, state: j.state } },
          h("td", {}, link(j.id)), h("td", {}, j.kind), h("td", {}, h("span", { class: `state ${j.state}` }, j.state)),
          h("td", {}, j.depends_on.length ? j.depends_on.flatMap((d, i) => (i ? [" ", link(d)] : [link(d)])) : "—"),
          h("td", {}, j.output === null || j.output === undefined ? "—" : pre(j.output)))), "workflow-jobs")),
    );
  };
  return { element: h("div", {}, h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")), heading, actions, details), refresh };
}
