// Errors: failures of the last day grouped by kind and message, with the latest example.
import { api, query } from "./api.js";
import { h, table, time } from "./dom.js";

export function errorsView() {
  const body = h("tbody");
  const summary = h("p");
  const refresh = async () => {
    const groups = await api(`/v1/errors${query({ minutes: 1440 })}`);
    summary.textContent = groups.length ? `${groups.length} groups of failures in the last 24 hours.` : "No failures in the last 24 hours.";
    body.replaceChildren(...groups.map((g) => h("tr", { dataset: { kind: g.kind } },
      h("th", { scope: "row" }, g.kind), h("td", { class: "error-text" }, g.pattern), h("td", {}, g.count),
      h("td", {}, g.discarded), h("td", {}, h("a", { href: `#/jobs/${g.latest_id}` }, `#${g.latest_id}`), " ", time(g.latest_at)),
      h("td", {}, h("a", { href: `#/jobs${query({ state: "retryable,discarded", kind: g.kind, q: g.latest_message.slice(0, 60) })}` }, "Jobs")))));
  };
  const element = h("div", {}, h("h2", {}, "Errors"), summary,
    table("Failures by kind and message", ["Kind", "Message (digits as #)", "Jobs", "Discarded", "Latest", "List"], [body], "errors"));
  return { element, refresh };
}
