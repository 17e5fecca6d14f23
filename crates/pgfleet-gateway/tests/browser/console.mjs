// Drives the console in headless Chromium (Debian's /usr/bin/chromium via playwright-core),
// mostly by keyboard. Called by the Rust test `console_browser.rs`, which runs the gateway
// and a worker, seeds the jobs, and passes coordinates in PGFLEET_UI_* variables. Prints
// one JSON line of findings; the Rust test asserts on them (and on the database).
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("PGFLEET_UI_BASE");
const adminKey = env("PGFLEET_UI_ADMIN_KEY");
const readKey = env("PGFLEET_UI_READ_KEY");
const failedId = env("PGFLEET_UI_FAILED_JOB");
const workflowId = env("PGFLEET_UI_WORKFLOW");
const T = { timeout: 20000 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const findings = { consoleErrors: [], unlabelled: {} };

// Every form control and button the page shows has an accessible name.
async function unlabelled(page) {
  return page.evaluate(() => {
    const named = (el) => {
      if (el.getAttribute("aria-label") || el.getAttribute("aria-labelledby")) return true;
      if (el.closest("label")) return true;
      if (el.id && document.querySelector(`label[for="${el.id}"]`)) return true;
      if ((el.tagName === "BUTTON" || el.tagName === "A") && el.textContent.trim()) return true;
      return false;
    };
    return [...document.querySelectorAll("input, select, textarea, button, a[href]")]
      .filter((el) => el.offsetParent !== null && !named(el))
      .map((el) => el.outerHTML.slice(0, 120));
  });
}

async function signIn(context, key) {
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") findings.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => findings.consoleErrors.push(String(e)));
  await page.goto(`${base}/ui/`);
  await page.fill("#api-key", key);
  await page.press("#api-key", "Enter");
  await page.waitForFunction(() => document.getElementById("scope").textContent.startsWith("scope:"), null, T);
  return page;
}

try {
  // 1. Filter to the failed job, open it, read its error history, retry it, watch it complete.
  const admin = await browser.newContext();
  const page = await signIn(admin, adminKey);
  findings.scope = await page.textContent("#scope");
  await page.waitForSelector("#jobs", T);
  findings.unlabelled.jobs = await unlabelled(page);
  await page.selectOption("select[name=state]", "retryable,discarded");
  await page.fill("input[name=kind]", "fail");
  await page.press("input[name=kind]", "Enter");
  await page.waitForFunction(() => location.hash.includes("kind=fail"), null, T);
  const row = `#jobs tbody tr[data-id="${failedId}"]`;
  await page.waitForSelector(row, T);
  findings.listed = await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => [r.dataset.id, r.dataset.state]));
  await page.focus(`${row} a`);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#attempts tbody tr", T);
  findings.jobUrl = page.url();
  findings.attemptsBefore = await page.$$eval("#attempts tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  findings.stateBefore = await page.textContent("#job-state");
  findings.unlabelled.job = await unlabelled(page);
  await page.focus("#retry");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.getElementById("job-state")?.textContent === "completed", null, T);
  findings.stateAfter = await page.textContent("#job-state");
  await page.waitForFunction(() => document.querySelectorAll("#attempts tbody tr").length === 3, null, T);
  findings.attemptsAfter = await page.$$eval("#attempts tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  findings.actionsAfter = await page.$$eval(".actions button", (bs) => bs.map((b) => b.id));

  // 2. Bulk-cancel the scheduled jobs of one kind by filter, confirming by keyboard.
  await page.goto(`${base}/ui/#/jobs?state=scheduled&kind=email.send`);
  await page.waitForSelector("#jobs tbody tr", T);
  await page.click("button[data-bulk=cancel]");
  await page.waitForSelector("#confirm[open]", T);
  findings.confirmText = await page.textContent("#confirm-text");
  findings.confirmFocus = await page.evaluate(() => document.activeElement.id);
  await page.keyboard.press("Tab");
  findings.confirmFocusAfterTab = await page.evaluate(() => document.activeElement.id);
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => /Cancel: \d+ jobs? done/.test(document.getElementById("status").textContent), null, T);
  findings.bulkStatus = await page.textContent("#status");
  await page.waitForFunction(() => document.getElementById("jobs-summary").textContent.startsWith("No jobs match"), null, T);

  // 3. Pause and resume a queue.
  await page.click('nav a[href="#/queues"]');
  await page.waitForSelector('#queues tr[data-queue="mail"]', T);
  findings.unlabelled.queues = await unlabelled(page);
  await page.focus('button[data-action=pause][data-queue="mail"]');
  await page.keyboard.press("Enter");
  await page.waitForSelector('#queues tr[data-queue="mail"][data-paused="true"]', T);
  findings.pausedShown = await page.textContent('#queues tr[data-queue="mail"] .paused-cell');
  findings.pausedInApi = await page.evaluate(async (key) => {
    const qs = await (await fetch("/v1/queues", { headers: { authorization: `Bearer ${key}` } })).json();
    return qs.find((q) => q.name === "mail").paused;
  }, adminKey);
  await page.click('button[data-action=resume][data-queue="mail"]');
  await page.waitForSelector('#queues tr[data-queue="mail"][data-paused="false"]', T);
  findings.resumedShown = await page.textContent('#queues tr[data-queue="mail"] .paused-cell');
  findings.charts = await page.$$eval('.queue-charts[data-queue="mail"] svg', (s) => s.map((x) => x.getAttribute("aria-label")));

  // A workflow: its jobs, what each waits for, their outputs' cells, its state.
  await page.goto(`${base}/ui/#/workflows/${workflowId}`);
  await page.waitForFunction(() => document.getElementById("workflow-state")?.textContent === "completed", null, T);
  findings.workflowJobs = await page.$$eval("#workflow-jobs tbody tr", (rows) => rows.map((r) => [r.dataset.id, r.dataset.state, r.cells[3].textContent]));
  findings.unlabelled.workflow = await unlabelled(page);

  // The other views render with their data and labelled controls.
  await page.click('nav a[href="#/fleet"]');
  await page.waitForSelector("#workers tbody tr", T);
  findings.workers = await page.$$eval("#workers tbody tr", (rows) => rows.map((r) => r.cells[4].textContent));
  findings.unlabelled.fleet = await unlabelled(page);
  await page.click('nav a[href="#/errors"]');
  await page.waitForSelector("#errors tbody tr", T);
  findings.errorGroups = await page.$$eval("#errors tbody tr", (rows) => rows.map((r) => [...r.cells].slice(0, 3).map((c) => c.textContent)));
  findings.unlabelled.errors = await unlabelled(page);

  // The key lives in this tab only: not in localStorage, and a new tab asks for it.
  findings.keyInLocalStorage = await page.evaluate((key) => Object.values(localStorage).includes(key), adminKey);
  const other = await admin.newPage();
  await other.goto(`${base}/ui/`);
  await other.waitForSelector("#error:not([hidden])", T);
  findings.newTabError = await other.textContent("#error");
  await other.close();

  // 4. A read-scope key sees everything and can act on nothing.
  const reader = await browser.newContext();
  const rpage = await signIn(reader, readKey);
  findings.readScope = await rpage.textContent("#scope");
  // (A hand-edited URL with a bad time is ignored, not a script error.)
  await rpage.goto(`${base}/ui/#/jobs?kind=email.send&from=not-a-time`);
  await rpage.waitForSelector("#jobs tbody tr", T);
  findings.readBulkButtons = await rpage.$$eval("button[data-bulk]", (b) => b.length);
  await rpage.goto(`${base}/ui/#/jobs/${failedId}`);
  await rpage.waitForSelector("#attempts tbody tr", T);
  findings.readJobButtons = await rpage.$$eval(".actions button", (b) => b.length);
  await rpage.click('nav a[href="#/queues"]');
  await rpage.waitForSelector('#queues tr[data-queue="mail"]', T);
  findings.readQueueButtons = await rpage.$$eval("button[data-action]", (b) => b.length);
  // The refusals below are logged by Chromium as failed loads: kept apart.
  const errorsSoFar = findings.consoleErrors.length;
  findings.readApiStatuses = await rpage.evaluate(async ([key, id]) => {
    const h = { authorization: `Bearer ${key}`, "content-type": "application/json" };
    const pause = await fetch("/v1/queues/mail/pause", { method: "POST", headers: h });
    const retry = await fetch(`/v1/jobs/${id}/retry`, { method: "POST", headers: h });
    const bulk = await fetch("/v1/jobs/bulk", { method: "POST", headers: h, body: JSON.stringify({ action: "delete", filter: {} }) });
    return [pause.status, retry.status, bulk.status];
  }, [readKey, failedId]);
  findings.refusalErrors = findings.consoleErrors.splice(errorsSoFar);

  // 5. axe-core (WCAG 2 A and AA rules) on every view. Its script is injected, which the
  // console's CSP forbids, so this context alone bypasses the CSP.
  const audit = await browser.newContext({ bypassCSP: true });
  const apage = await signIn(audit, adminKey);
  findings.a11y = [];
  const views = [["jobs", "#/jobs", "#jobs tbody tr"], ["job", `#/jobs/${failedId}`, "#attempts tbody tr"],
    ["workflow", `#/workflows/${workflowId}`, "#workflow-jobs tbody tr"], ["queues", "#/queues", "#queues tbody tr"],
    ["fleet", "#/fleet", "#workers tbody tr"], ["errors", "#/errors", "#errors tbody tr"], ["push", "#/push", "#subscribe"]];
  for (const [name, hash, ready] of views) {
    await apage.goto(`${base}/ui/${hash}`);
    await apage.waitForSelector(ready, T);
    if (!(await apage.evaluate(() => "axe" in window))) await apage.addScriptTag({ path: axePath });
    const violations = await apage.evaluate(async () => {
      const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa"] } });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, first: v.nodes[0]?.target?.join(" ") }));
    });
    for (const v of violations) findings.a11y.push({ view: name, ...v });
  }
  findings.a11yViews = views.length;
} finally {
  await browser.close();
}
console.log(JSON.stringify(findings));
