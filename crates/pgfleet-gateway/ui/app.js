// The console: a hash router over views that refresh themselves every 2 s while the tab is
// visible (polling: EventSource cannot send the Authorization header, and the key is never
// put in a cookie or a URL).
import { api, session } from "./api.js";
import { jobsView, jobView } from "./jobs.js";
import { queuesView } from "./queues.js";
import { fleetView } from "./fleet.js";
import { errorsView } from "./errors.js";
import { pushView } from "./push.js";
import { workflowView } from "./workflows.js";
import { showError } from "./dom.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;

const routes = [
  [/^#\/jobs\/(\d+)$/, (m) => jobView(Number(m[1]))],
  [/^#\/jobs(\?.*)?$/, (m) => jobsView(new URLSearchParams((m[1] || "").slice(1)))],
  [/^#\/workflows\/(\d+)$/, (m) => workflowView(Number(m[1]))],
  [/^#\/queues$/, () => queuesView()],
  [/^#\/fleet$/, () => fleetView()],
  [/^#\/errors$/, () => errorsView()],
  [/^#\/push$/, () => pushView()],
];

let current = null;
let timer = null;

async function loadMe() {
  session.me = null;
  if (!session.key) {
    $("scope").textContent = "";
    return false;
  }
  try {
    session.me = await api("/v1/me");
    $("scope").textContent = `scope: ${session.me.scope}${session.admin ? "" : " (read only)"}`;
    return true;
  } catch (e) {
    showError(`API key: ${e.message}`);
    $("scope").textContent = "";
    return false;
  }
}

async function render() {
  clearTimeout(timer);
  const hash = location.hash || "#/jobs";
  for (const a of document.querySelectorAll("nav a")) {
    const on = hash.startsWith(a.getAttribute("href"));
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const view = $("view");
  if (!session.me) {
    view.replaceChildren();
    if (!session.key) showError("Enter an API key (pgfleet dev prints one).");
    return;
  }
  const route = routes.find(([re]) => re.test(hash));
  if (!route) {
    location.hash = "#/jobs";
    return;
  }
  current = route[1](hash.match(route[0]));
  view.replaceChildren(current.element);
  const heading = view.querySelector("h2");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
  document.title = `${heading ? heading.textContent : "pgfleet"} — pgfleet console`;
  await tick(current);
}

async function tick(view) {
  if (view !== current) return;
  if (!document.hidden) {
    try {
      await view.refresh();
      showError("");
    } catch (e) {
      showError(e.message);
    }
  }
  if (view === current) timer = setTimeout(() => tick(view), REFRESH_MS);
}

$("api-key").value = session.key ? "••••••••" : "";
$("settings").addEventListener("submit", async (e) => {
  e.preventDefault();
  const v = $("api-key").value.trim();
  if (v && v !== "••••••••") session.key = v;
  if (await loadMe()) {
    showError("");
    $("api-key").value = "••••••••";
  }
  render();
});
$("forget-key").addEventListener("click", () => {
  session.key = "";
  $("api-key").value = "";
  loadMe().then(render);
});
window.addEventListener("hashchange", render);
document.addEventListener("visibilitychange", () => { if (!document.hidden && current) current.refresh().catch(() => {}); });
loadMe().then(render);
