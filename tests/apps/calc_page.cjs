// Drives the calculator page in Debian's headless Chromium through playwright-core.
// Usage: node calc_page.cjs <front-url> <screenshot.png>; prints what the page showed as JSON.
"use strict";

const { chromium } = require("playwright-core");

async function answer(page, expression) {
  await page.fill("#expression", expression);
  await page.click("#go");
  await page.waitForFunction(() => {
    const shown = document.getElementById("result").textContent;
    return shown !== "…" && !document.getElementById("go").disabled;
  }, null, { timeout: 10000 });
  return page.evaluate(() => ({
    result: document.getElementById("result").textContent,
    error: document.getElementById("error").hidden ? null
      : document.getElementById("error").textContent,
    services: Array.from(document.querySelectorAll("#calls tbody .service"))
      .map((cell) => cell.textContent),
    summary: document.getElementById("summary").textContent,
  }));
}

async function main() {
  const [url, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
    const consoleErrors = [];
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(message.text());
    });
    await page.goto(url, { waitUntil: "load", timeout: 15000 });
    await page.waitForFunction(
      () => document.querySelectorAll("#health li").length === 4, null, { timeout: 10000 });
    const health = await page.$$eval("#health li", (items) => items.map((li) => li.className));
    const first = await answer(page, "(5+6)*2");
    const second = await answer(page, "((1+2)*(3+4)) - 10/4");
    await page.screenshot({ path: screenshot, fullPage: true });
    const bad = await answer(page, "2 x");
    process.stdout.write(JSON.stringify({ health, first, second, bad, consoleErrors }) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack || error) + "\n");
  process.exit(1);
});
