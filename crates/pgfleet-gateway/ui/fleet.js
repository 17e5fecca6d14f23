// Fleet: live workers (partitions, held jobs, heartbeat) and worker pools (desired vs ready
// replicas over time, the autoscaler's recent decisions and reasons).
import { api } from "./api.js";
import { h, table, time, ago, duration, section } from "./dom.js";
import { lineChart } from "./chart.js";

export function fleetView() {
  const workers = h("tbody");
  const pools = h("div", { class: "pools" });
  const refresh = async () => {
    const [ws, ps] = await Promise.all([api("/v1/workers"), api("/v1/pools?minutes=60")]);
    workers.replaceChildren(...ws.map((w) => h("tr", { dataset: { worker: w.id } },
      h("th", { scope: "row" }, w.id), h("td", {}, w.pool), h("td", {}, w.hostname), h("td", {}, w.queues.join(", ")),
      h("td", {}, `${w.held} / ${w.concurrency}`), h("td", {}, w.partitions.length ? w.partitions.join(" ") : "none"),
      h("td", {}, ago(w.heartbeat_at)))));
    pools.replaceChildren(...(ps.length ? ps.map(({ pool: p, history }) => {
      const t = history.map((x) => new Date(x.at));
      const changes = history.filter((x, i) => i === 0 || x.desired !== history[i - 1].desired || x.reason !== history[i - 1].reason).slice(-10).reverse();
      return h("article", { class: "pool", dataset: { pool: p.name }, "aria-labelledby": `pool-${p.name}` },
        h("h4", { id: `pool-${p.name}` }, `${p.name} (${p.source})`),
        h("p", {}, `${p.actual} ready of ${p.desired} desired; backlog ${p.backlog}, lag ${duration(p.lag_seconds)}; ${p.reason} (${ago(p.updated_at)})`),
        lineChart(`${p.name} replicas`, t, [
          { name: "desired", values: history.map((x) => x.desired), cls: "a" },
          { name: "ready", values: history.map((x) => x.actual), cls: "b" }]),
        lineChart(`${p.name} backlog`, t, [{ name: "backlog", values: history.map((x) => x.backlog), cls: "c" }]),
        table(`${p.name} recent decisions`, ["When", "Desired", "Ready", "Backlog", "Reason"],
          changes.map((x) => h("tr", {}, h("td", {}, time(x.at)), h("td", {}, x.desired), h("td", {}, x.actual),
            h("td", {}, x.backlog), h("td", {}, x.reason)))));
    }) : [h("p", {}, "No worker pools report here yet (the Kubernetes controller and pgfleet dev's local pools do).")]));
  };
  const element = h("div", {}, h("h2", {}, "Fleet"),
    section("Workers", table("Workers", ["Worker", "Pool", "Host", "Queues", "Jobs held / slots", "Partitions owned", "Last heartbeat"], [workers], "workers")),
    section("Pools", pools));
  return { element, refresh };
}
