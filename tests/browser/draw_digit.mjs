// A real browser on kitnn_serve's page: Debian's headless Chromium, driven by
// playwright-core (which downloads no browser), draws digits stroke by stroke with mouse
// events on the canvas and reads what the page predicts.
//
//   node draw_digit.mjs SERVE_BIN MNIST_APPLY_BIN MODEL WORK_DIR
//   (env KITNN_CHROMIUM: the browser, default /usr/bin/chromium)
//
// Checks: the page loads without script errors and requests nothing but its own server;
// the prediction appears while a stroke is still being drawn; a drawn 1, 7 and 0 are read
// as 1, 7 and 0; the top-3 bars show the server's probabilities for exactly the pixels
// the page sent; "save as a labelled example" (kitnn_serve --collect) stores a PNG that
// mnist_apply classifies as the page showed; the raw/MNIST-style toggle changes the
// 28x28 image (raw: dark ink on white; MNIST-style: white on black); undo and clear.
// Writes WORK_DIR/serve_page.png (the screenshot docs/own-digits.md shows).
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const [serveBin, applyBin, model, work] = process.argv.slice(2);
fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });
const collect = path.join(work, "collect");

let passed = 0, failed = 0;
function check(what, cond, detail = "") {
  if (cond) { passed++; console.log(`ok   - ${what}`); }
  else { failed++; console.log(`FAIL - ${what}${detail === "" ? "" : ": " + String(detail).slice(0, 600)}`); }
  return cond;
}

// The server, on 127.0.0.1 and a port it picks; its URL is read from its first lines.
const server = spawn(serveBin, ["--model", model, "--host", "127.0.0.1", "--port", "0", "--collect", collect],
                     { stdio: ["ignore", "pipe", "pipe"] });
let serverOut = "";
server.stderr.on("data", (d) => fs.appendFileSync(path.join(work, "server.log"), d));
const origin = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("kitnn_serve printed no URL in 30 s")), 30000);
  server.stdout.on("data", (d) => {
    serverOut += d;
    const m = serverOut.match(/open (http:\/\/127\.0\.0\.1:\d+)\//);
    if (m) { clearTimeout(timer); resolve(m[1]); }
  });
  server.on("exit", (code) => reject(new Error(`kitnn_serve exited with ${code} before serving`)));
});
const serverExit = new Promise((resolve) => server.on("exit", (code, signal) => resolve({ code, signal })));

const browser = await chromium.launch({
  executablePath: process.env.KITNN_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // As root Chromium needs --no-sandbox; the others keep it from reaching the network
  // on its own (updates, sync, field trials) and from using a GPU the machine lacks.
  // playwright-core gives every launch a fresh, temporary --user-data-dir.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-pings",
         "--disable-domain-reliability"],
  timeout: 60000,
});
let code = 1;
try {
  const page = await browser.newPage({ viewport: { width: 910, height: 650 }, deviceScaleFactor: 1 });
  const requests = [], pageErrors = [];
  page.on("request", (r) => requests.push(r));
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });

  await page.goto(origin + "/");
  await page.waitForFunction(() => document.getElementById("model").textContent.startsWith("model "));
  check("the page loads and shows the model", true);

  const box = await page.locator("#pad").boundingBox();
  const at = (u, v) => [box.x + u * box.width, box.y + v * box.height];
  const idle = () => page.waitForFunction(() => document.body.dataset.state === "idle", null, { timeout: 15000 });
  const classifyCount = () => requests.filter((r) => r.url().includes("/api/classify")).length;
  // One stroke through points given in [0,1] canvas coordinates, with intermediate
  // mouse moves, as a hand draws.
  async function stroke(points, steps = 6) {
    await page.mouse.move(...at(...points[0]));
    await page.mouse.down();
    for (const p of points.slice(1)) await page.mouse.move(...at(...p), { steps });
    await page.mouse.up();
  }
  async function shown() {
    return page.evaluate(() => {
      const seen = document.getElementById("seen").getContext("2d").getImageData(0, 0, 28, 28).data;
      let sum = 0;
      for (let i = 0; i < seen.length; i += 4) sum += seen[i];
      return {
        label: document.getElementById("prediction").textContent,
        bars: [...document.querySelectorAll("#bars .bar")].map((b) => ({
          label: b.querySelector(".name").textContent, pct: b.querySelector(".pct").textContent })),
        seenMean: sum / (28 * 28 * 255),
        seenText: document.getElementById("seen-text").textContent,
      };
    });
  }
  const lastClassify = () => requests.filter((r) => r.url().includes("/api/classify")).at(-1);
  // The server's answer for exactly the pixels of the page's last request.
  async function serverAnswer() {
    const r = lastClassify();
    const res = await fetch(r.url(), { method: "POST", headers: { "Content-Type": "application/octet-stream" },
                                       body: r.postDataBuffer() });
    return res.json();
  }
  const pct = (p) => (100 * p).toFixed(1) + " %";

  // 1: one slightly slanted stroke; the prediction must be on the page before mouse up.
  await page.mouse.move(...at(0.52, 0.15));
  await page.mouse.down();
  for (const v of [0.3, 0.45, 0.6, 0.75, 0.88]) {
    await page.mouse.move(...at(0.52 - (v - 0.15) * 0.12, v), { steps: 4 });
    await page.waitForTimeout(60);
  }
  await page.waitForFunction(() => document.getElementById("prediction").textContent !== "–");
  const during = await shown();
  check("a prediction is shown while the stroke is still being drawn (live)", during.bars.length === 3,
        JSON.stringify(during));
  await page.mouse.up();
  await idle();
  let s = await shown();
  check("a drawn 1 is read as 1", s.label === "1", JSON.stringify(s));
  check("several requests were made for one stroke", classifyCount() >= 2, classifyCount());
  let j = await serverAnswer();
  check("the top-3 bars are the server's answer for the pixels the page sent",
        JSON.stringify(s.bars) === JSON.stringify(j.top.map((t) => ({ label: t.class, pct: pct(t.probability) }))),
        JSON.stringify([s.bars, j.top]));
  check("MNIST-style: the network saw white ink on black (mean brightness < 0.3)", s.seenMean < 0.3, s.seenMean);

  // Clear, then a 0: one closed oval stroke.
  await page.click("#clear");
  await idle();
  s = await shown();
  check("clear empties the canvas and the prediction", s.label === "–" && s.bars.length === 0, JSON.stringify(s));
  const oval = [];
  for (let k = 0; k <= 28; k++) {
    const a = -Math.PI / 2 + (2 * Math.PI * k) / 26;  // a little past the start, as a hand closes a 0
    oval.push([0.5 + 0.22 * Math.cos(a), 0.5 + 0.32 * Math.sin(a)]);
  }
  await stroke(oval, 2);
  await idle();
  s = await shown();
  check("a drawn 0 is read as 0", s.label === "0", JSON.stringify(s));

  // 7: a bar, then the downstroke, as two strokes; then undo and clear.
  await page.click("#clear");
  await idle();
  await stroke([[0.25, 0.2], [0.5, 0.2], [0.75, 0.2]]);
  await idle();
  const afterBar = classifyCount();
  await stroke([[0.75, 0.2], [0.62, 0.45], [0.5, 0.68], [0.42, 0.85]]);
  await idle();
  s = await shown();
  check("a drawn 7 (two strokes) is read as 7", s.label === "7", JSON.stringify(s));
  j = await serverAnswer();
  check("the 7's bars are the server's answer for the page's pixels",
        JSON.stringify(s.bars) === JSON.stringify(j.top.map((t) => ({ label: t.class, pct: pct(t.probability) }))),
        JSON.stringify([s.bars, j.top]));

  // Save it as a labelled example (the server runs with --collect); mnist_apply on the
  // stored PNG gives what the page shows.
  await page.selectOption("#label", "7");
  await page.click("#save");
  await page.waitForFunction(() => document.getElementById("saved").dataset.file);
  const file = await page.evaluate(() => document.getElementById("saved").dataset.file);
  const csv = fs.readFileSync(path.join(collect, "labels.csv"), "utf8");
  check("save: the PNG and its labels.csv row are on the server", fs.existsSync(path.join(collect, file)) &&
        csv === `file,label\n${file},7\n`, csv);
  const applied = JSON.parse(execFileSync(applyBin, ["--model", model, "--json", "--top", "3",
                                                     path.join(collect, file)], { encoding: "utf8" }));
  // mnist_apply prints 4 decimals: compare at 4 decimals with the server's answer for the
  // pixels the page sent (whose bars the page showed, checked above).
  const four = (top) => top.map((t) => `${t.digit}:${t.probability.toFixed(4)}`).join(" ");
  check("mnist_apply on the saved PNG: the page's prediction and the same top 3 (4 decimals)",
        String(applied.prediction) === s.label && four(applied.top) === four(j.top),
        JSON.stringify([applied, j.top]));

  // The screenshot for docs/own-digits.md: the 7, MNIST-style.
  await page.screenshot({ path: path.join(work, "serve_page.png") });
  check("screenshot written", fs.statSync(path.join(work, "serve_page.png")).size > 10000);

  // Raw: the same drawing only scaled down — dark ink on white, as the network never saw.
  await page.click('.toggle label:has(input[value="raw"])');
  await idle();
  const raw = await shown();
  check("raw: the 28x28 image is the drawing scaled down, dark on white (mean brightness > 0.7)",
        raw.seenMean > 0.7 && raw.seenText.includes("raw"), JSON.stringify(raw));
  j = await serverAnswer();
  check("raw: the page sent ?preprocess=raw and shows the server's answer",
        lastClassify().url().includes("preprocess=raw") &&
        JSON.stringify(raw.bars) === JSON.stringify(j.top.map((t) => ({ label: t.class, pct: pct(t.probability) }))),
        JSON.stringify([raw.bars, j.top]));
  await page.screenshot({ path: path.join(work, "serve_page_raw.png") });
  await page.click('.toggle label:has(input[value="mnist"])');
  await idle();

  // Undo: the downstroke goes, the bar stays and is classified again; undo again empties.
  const beforeUndo = classifyCount();
  await page.click("#undo");
  await idle();
  s = await shown();
  check("undo removes the last stroke and the page classifies what is left",
        classifyCount() > beforeUndo && s.bars.length === 3 && afterBar > 0, JSON.stringify(s));
  await page.click("#undo");
  await idle();
  s = await shown();
  check("undo of the last stroke empties the prediction", s.label === "–", JSON.stringify(s));

  check("no script errors on the page", pageErrors.length === 0, pageErrors.join("; "));
  const foreign = requests.map((r) => r.url()).filter((u) => !u.startsWith(origin + "/"));
  check(`the page requested nothing but its own server (${requests.length} requests)`, foreign.length === 0,
        foreign.join(" "));
  code = failed ? 1 : 0;
} catch (e) {
  console.log(`FAIL - ${e.stack || e}`);
  failed++;
} finally {
  await browser.close();
  server.kill("SIGTERM");
  const { code: rc } = await serverExit;
  check("the server stops on SIGTERM with exit code 0", rc === 0, rc);
}
console.log(`serve_browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
