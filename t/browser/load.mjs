// Drives Debian's headless Chromium with playwright-core for t/browser.rs.
//
//   node load.mjs '<json options>'
//
// Options: chromium (the executable), spki (the base64 SHA-256 of the test
// certificate's public key, which Chromium then accepts), url (an article
// page), screenshot (a PNG path), name and body (the comment to post).
//
// Talks to the test on stdout and stdin, one JSON object a line: it loads
// the page as a first visitor and prints {"step": "first", ...}, then waits
// for a line on stdin (the test waits meanwhile until the page's variants
// are stored), loads it again as a second visitor (a new browser context:
// no cache, no cookies), takes the screenshot, reloads (a revalidation),
// posts the comment through the page's own form and script, and prints
// {"step": "second", ...}. Each report has the main document's response
// (status, headers, the request's headers, the protocol, the title) and
// every response the context got. Failures print {"step": "error", ...}
// and exit 1.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const options = JSON.parse(process.argv[2]);
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

function report(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

// Every response of a context: url, status, method and the headers that
// tell where it came from.
function recordResponses(context) {
  const seen = [];
  context.on("response", (response) => {
    const headers = response.headers();
    seen.push({
      url: response.url(),
      method: response.request().method(),
      status: response.status(),
      static_gen: headers["x-static-gen"] ?? null,
      content_encoding: headers["content-encoding"] ?? null,
    });
  });
  return seen;
}

// The main document of a navigation: its response and what the browser
// sent and negotiated.
async function documentOf(page, response) {
  const request = response.request();
  const sent = await request.allHeaders();
  return {
    url: response.url(),
    status: response.status(),
    headers: await response.allHeaders(),
    accept_encoding: sent["accept-encoding"] ?? null,
    sent,
    protocol: await page.evaluate(
      () => performance.getEntriesByType("navigation")[0]?.nextHopProtocol ?? null,
    ),
    title: await page.title(),
  };
}

const browser = await chromium.launch({
  executablePath: options.chromium,
  headless: true,
  // as root in a container: no sandbox; nothing of Google's on a closed
  // network; a self-signed certificate
  chromiumSandbox: false,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // the test's certificate only, as if it were valid: responses are then
    // cached (Chromium caches nothing from a connection with certificate
    // errors), so a reload revalidates
    `--ignore-certificate-errors-spki-list=${options.spki}`,
  ],
  timeout: 30_000,
});

try {
  // the first visitor: Django renders the page, nginx stores it
  const first = await browser.newContext();
  const firstResponses = recordResponses(first);
  const page1 = await first.newPage();
  const response1 = await page1.goto(options.url, { waitUntil: "load" });
  report({
    step: "first",
    document: await documentOf(page1, response1),
    responses: firstResponses,
  });
  await first.close();

  // the test says when the page's variants are stored
  const go = await lines.next();
  if (go.done) throw new Error("stdin closed before the second load");

  // the second visitor, with a cache and cookies of its own
  const second = await browser.newContext();
  const responses = recordResponses(second);
  const page = await second.newPage();
  const response2 = await page.goto(options.url, { waitUntil: "load" });
  const document = await documentOf(page, response2);
  await page.screenshot({ path: options.screenshot, fullPage: true });
  const rendered = {
    h1: await page.locator("h1.title").innerText(),
    comment_count: await page.locator(".comment-count").innerText(),
  };

  // a reload: the browser revalidates what it has
  const reloaded = await page.reload({ waitUntil: "load" });
  const reload = await documentOf(page, reloaded);

  // the comment form: its script fetches a token from /csrf/, then submits
  await page.fill("#id_name", options.name);
  await page.fill("#id_body", options.body);
  await Promise.all([
    page.waitForURL(/#comment-\d+$/, { waitUntil: "load", timeout: 15_000 }),
    page.click("#comment-form button[type=submit]"),
  ]);
  const comments = await page.locator(".comment").allInnerTexts();
  report({
    step: "second",
    document,
    rendered,
    reload,
    after_comment: {
      url: page.url(),
      title: await page.title(),
      comment_count: await page.locator(".comment-count").innerText(),
      comments,
    },
    responses,
  });
  await second.close();
} catch (error) {
  report({ step: "error", error: String(error && error.stack ? error.stack : error) });
  process.exitCode = 1;
} finally {
  stdin.close();
  await browser.close();
}
