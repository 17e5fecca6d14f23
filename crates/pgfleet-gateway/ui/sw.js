// pgfleet's service worker: shows each push as a notification and opens its URL on click.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    message = { title: "pgfleet", body: event.data ? event.data.text() : "" };
  }
  const title = message.title || "pgfleet";
  event.waitUntil(self.registration.showNotification(title, {
    body: message.body || "",
    icon: message.icon || undefined,
    lang: message.locale || undefined,
    tag: message.notification_id ? `pgfleet-${message.notification_id}` : undefined,
    data: { url: message.url || "/ui/", notification_id: message.notification_id, type: message.type, data: message.data },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || "/ui/";
  event.waitUntil(self.clients.openWindow(url));
});
