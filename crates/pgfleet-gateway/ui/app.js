// The pgfleet page: queue stats, push subscription, recent notifications and their attempts.
const $ = (id) => document.getElementById(id);
const settings = {
  get key() { return localStorage.getItem("pgfleet.apiKey") || ""; },
  get user() { return localStorage.getItem("pgfleet.userId") || "demo-user"; },
};

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: { "authorization": `Bearer ${settings.key}`, "content-type": "application/json", ...(options.headers || {}) },
  });
  if (!res.ok) {
    let detail = res.statusText;
    try {
      const p = await res.json();
      detail = p.field ? `${p.detail} (field ${p.field})` : p.detail || detail;
    } catch { /* not problem+json */ }
    throw new Error(`${res.status}: ${detail}`);
  }
  return res.status === 204 ? null : res.json();
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function refreshQueues() {
  const queues = await api("/v1/queues");
  const body = $("queues").querySelector("tbody");
  body.replaceChildren(...queues.map((q) => {
    const tr = document.createElement("tr");
    tr.dataset.queue = q.name;
    tr.append(cell(q.name), cell(q.available), cell(q.running), cell(q.retryable), cell(q.scheduled),
      cell(Number(q.oldest_available_age_secs).toFixed(1)), cell((q.completed_last_minute / 60).toFixed(1)),
      cell(q.paused ? "yes" : "no"));
    return tr;
  }));
}

async function refreshNotifications() {
  const notes = await api(`/v1/notifications?user_id=${encodeURIComponent(settings.user)}&limit=10`);
  const items = await Promise.all(notes.map(async (n) => {
    const li = document.createElement("li");
    li.dataset.id = n.id;
    const title = document.createElement("strong");
    title.textContent = `${n.title}`;
    li.append(title, ` — ${n.body} (${n.deliveries} deliveries, ${new Date(n.created_at).toLocaleTimeString()})`);
    for (const a of await api(`/v1/notifications/${n.id}/attempts`)) {
      const div = document.createElement("div");
      div.className = `attempt ${a.status}`;
      div.textContent = `attempt ${a.attempt}: ${a.status}${a.http_status ? ` (HTTP ${a.http_status})` : ""}, ${a.latency_ms} ms${a.error ? ` — ${a.error}` : ""}`;
      li.append(div);
    }
    return li;
  }));
  $("notifications").replaceChildren(...items);
}

async function refresh() {
  if (!settings.key) {
    showError("Enter an API key (pgfleet dev prints one).");
    return;
  }
  try {
    await Promise.all([refreshQueues(), refreshNotifications()]);
    showError("");
  } catch (e) {
    showError(e.message);
  }
}

function base64UrlToBytes(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

async function subscribe() {
  try {
    if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
      throw new Error("this browser does not support Web Push");
    }
    const permission = await Notification.requestPermission();
    if (permission !== "granted") throw new Error(`notification permission is ${permission}`);
    const registration = await navigator.serviceWorker.register("/ui/sw.js", { scope: "/ui/" });
    await navigator.serviceWorker.ready;
    const { publicKey } = await api("/v1/vapid-public-key");
    const subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: base64UrlToBytes(publicKey),
    });
    const saved = await api("/v1/subscriptions", {
      method: "POST",
      body: JSON.stringify({ user_id: settings.user, ...subscription.toJSON() }),
    });
    $("push-status").textContent = `subscribed (subscription ${saved.id})`;
    showError("");
  } catch (e) {
    showError(`subscribe failed: ${e.message}`);
  }
}

async function sendTest() {
  try {
    await api("/v1/notifications", {
      method: "POST",
      body: JSON.stringify({
        type: "test", user_ids: [settings.user], title: "Test notification",
        body: `Sent from the pgfleet page at ${new Date().toLocaleTimeString()}`, url: "/ui/",
      }),
    });
    await refreshNotifications();
  } catch (e) {
    showError(`send failed: ${e.message}`);
  }
}

$("api-key").value = settings.key;
$("user-id").value = settings.user;
$("settings").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem("pgfleet.apiKey", $("api-key").value.trim());
  localStorage.setItem("pgfleet.userId", $("user-id").value.trim() || "demo-user");
  refresh();
});
$("subscribe").addEventListener("click", subscribe);
$("send-test").addEventListener("click", sendTest);
refresh();
setInterval(refresh, 3000);
