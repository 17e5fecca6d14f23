// Drives the gateway's page in headless Chromium (Debian's /usr/bin/chromium via
// playwright-core). Called by the Rust test `browser.rs`, which runs the gateway, a worker
// and the fake push service, and passes their coordinates in PGFLEET_UI_* variables.
//
// No network here, so PushManager.prototype.subscribe is stubbed to return the fake push
// service's subscription; the service worker's push event is fired through the DevTools
// protocol (ServiceWorker.deliverPushMessage) with the message the fake service decrypted.
// Prints one JSON line of findings; the Rust test asserts on it.
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("PGFLEET_UI_BASE");
const apiKey = env("PGFLEET_UI_API_KEY");
const subscription = JSON.parse(env("PGFLEET_UI_SUBSCRIPTION"));
const userId = env("PGFLEET_UI_USER");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const findings = {};
try {
  const context = await browser.newContext();
  await context.grantPermissions(["notifications"], { origin: base });
  await context.addInitScript((sub) => {
    // The only stub: no push service is reachable from here.
    PushManager.prototype.subscribe = async function (options) {
      const key = new Uint8Array(options.applicationServerKey);
      window.__applicationServerKey = btoa(String.fromCharCode(...key))
        .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      return { endpoint: sub.endpoint, expirationTime: null, toJSON: () => sub };
    };
  }, subscription);
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  const cdp = await context.newCDPSession(page);
  const registrations = [];
  cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => registrations.push(...e.registrations));
  await cdp.send("ServiceWorker.enable");

  await page.goto(`${base}/`);
  findings.url = page.url();
  await page.fill("#api-key", apiKey);
  await page.click("#settings button[type=submit]");
  await page.click('nav a[href="#/queues"]');
  await page.waitForSelector("#queues tbody tr", { timeout: 15000 });
  findings.queues = await page.$$eval("#queues tbody tr", (rows) => rows.map((r) => r.dataset.queue));
  await page.click('nav a[href="#/push"]');
  await page.fill("#user-id", userId);

  await page.click("#subscribe");
  await page.waitForFunction(() => document.getElementById("push-status").textContent.startsWith("subscribed"), null, { timeout: 15000 });
  findings.pushStatus = await page.textContent("#push-status");
  findings.applicationServerKey = await page.evaluate(() => window.__applicationServerKey);

  await page.click("#send-test");
  await page.waitForSelector("#notifications li .attempt.delivered", { timeout: 20000 });
  findings.notificationText = await page.textContent("#notifications li");

  // The push the fake service decrypted, handed to the service worker as a browser would.
  const registration = registrations.find((r) => r.scopeURL === `${base}/ui/` && !r.isDeleted);
  if (!registration) throw new Error(`no service worker registration for ${base}/ui/: ${JSON.stringify(registrations)}`);
  const pushed = env("PGFLEET_UI_PUSH_FILE");
  const fs = await import("node:fs");
  const deadline = Date.now() + 20000;
  while (!fs.existsSync(pushed) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const data = fs.readFileSync(pushed, "utf8");
  await cdp.send("ServiceWorker.deliverPushMessage", { origin: base, registrationId: registration.registrationId, data });
  findings.shown = await page.evaluate(async () => {
    const reg = await navigator.serviceWorker.getRegistration("/ui/");
    for (let i = 0; i < 100; i++) {
      const shown = await reg.getNotifications();
      if (shown.length) return shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
      await new Promise((r) => setTimeout(r, 100));
    }
    return [];
  });
  findings.consoleErrors = consoleErrors;
} finally {
  await browser.close();
}
console.log(JSON.stringify(findings));
