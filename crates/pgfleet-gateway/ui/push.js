// Push: subscribe this browser, send a test notification, and recent notifications with
// their delivery attempts (the seed page).
import { api, post, query } from "./api.js";
import { h, showError } from "./dom.js";

const USER = "pgfleet.userId";
const user = () => localStorage.getItem(USER) || "demo-user";

function base64UrlToBytes(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

export function pushView() {
  const userInput = h("input", { id: "user-id", value: user() });
  const status = h("span", { id: "push-status" }, "not subscribed");
  const list = h("ul", { id: "notifications" });
  userInput.addEventListener("input", () => localStorage.setItem(USER, userInput.value.trim() || "demo-user"));

  const refresh = async () => {
    const notes = await api(`/v1/notifications${query({ user_id: user(), limit: 10 })}`);
    const items = await Promise.all(notes.map(async (n) => {
      const li = h("li", { dataset: { id: n.id } }, h("strong", {}, n.title),
        ` — ${n.body} (${n.deliveries} deliveries, ${new Date(n.created_at).toLocaleTimeString()})`);
      for (const a of await api(`/v1/notifications/${n.id}/attempts`)) {
        li.append(h("div", { class: `attempt ${a.status}` },
          `attempt ${a.attempt}: ${a.status}${a.http_status ? ` (HTTP ${a.http_status})` : ""}, ${a.latency_ms} ms${a.error ? ` — ${a.error}` : ""}`));
      }
      return li;
    }));
    list.replaceChildren(...items);
  };

  const subscribe = async () => {
    try {
      if (!("serviceWorker" in navigator) || !("PushManager" in window)) throw new Error("this browser does not support Web Push");
      const permission = await Notification.requestPermission();
      if (permission !== "granted") throw new Error(`notification permission is ${permission}`);
      const registration = await navigator.serviceWorker.register("/ui/sw.js", { scope: "/ui/" });
      await navigator.serviceWorker.ready;
      const { publicKey } = await api("/v1/vapid-public-key");
      const subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64UrlToBytes(publicKey) });
      const saved = await post("/v1/subscriptions", { user_id: user(), ...subscription.toJSON() });
      status.textContent = `subscribed (subscription ${saved.id})`;
      showError("");
    } catch (e) {
      showError(`subscribe failed: ${e.message}`);
    }
  };

  const sendTest = async () => {
    try {
      await post("/v1/notifications", {
        type: "test", user_ids: [user()], title: "Test notification",
        body: `Sent from the pgfleet page at ${new Date().toLocaleTimeString()}`, url: "/ui/",
      });
      await refresh();
    } catch (e) {
      showError(`send failed: ${e.message}`);
    }
  };

  const element = h("div", {}, h("h2", {}, "Push"),
    h("label", {}, "User id ", userInput),
    h("p", {}, "Status: ", status),
    h("button", { id: "subscribe", type: "button", onclick: subscribe }, "Subscribe this browser"), " ",
    h("button", { id: "send-test", type: "button", onclick: sendTest }, "Send a test notification"),
    h("section", { "aria-labelledby": "recent" }, h("h3", { id: "recent" }, "Recent notifications"), list));
  return { element, refresh };
}
