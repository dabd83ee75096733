// Sends the expression to the front end, shows the result and the service calls it made.
"use strict";

const $ = (id) => document.getElementById(id);

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content;
  if (className) node.className = className;
  return node;
}

function showCalls(calls, totalMs) {
  const body = $("calls").tBodies[0];
  body.replaceChildren();
  $("no-calls").hidden = calls.length > 0;
  const span = Math.max(totalMs, ...calls.map((c) => c.start_ms + (c.duration_ms || 0)), 0.001);
  calls.forEach((call, index) => {
    const row = document.createElement("tr");
    row.className = "svc-" + call.service + (call.error ? " failed" : "");
    row.append(
      text("td", String(index + 1)),
      text("td", call.service, "service"),
      text("td", `${call.a} ${call.op} ${call.b}`, "mono"),
      text("td", call.error ? call.error : call.result, "mono"),
      text("td", call.duration_ms == null ? "…" : call.duration_ms.toFixed(2), "num"),
    );
    const cell = document.createElement("td");
    cell.className = "timeline";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.left = (100 * call.start_ms / span).toFixed(2) + "%";
    bar.style.width = Math.max(0.8, 100 * (call.duration_ms || 0) / span).toFixed(2) + "%";
    cell.append(bar);
    row.append(cell);
    body.append(row);
  });
}

async function calculate(event) {
  event.preventDefault();
  const expression = $("expression").value;
  const mode = document.querySelector("input[name=mode]:checked").value;
  $("go").disabled = true;
  $("result").textContent = "…";
  $("error").hidden = true;
  $("summary").textContent = "";
  try {
    const response = await fetch("/?mode=" + mode, {
      method: "POST",
      headers: { "Accept": "application/json", "Content-Type": "text/plain" },
      body: expression,
    });
    const answer = await response.json();
    if (response.ok) {
      $("result").textContent = answer.result;
      $("result").className = "ok";
      $("summary").textContent =
        `${answer.operations} operation(s), depth ${answer.depth}, ${mode}: ` +
        `${answer.duration_ms.toFixed(2)} ms`;
      showCalls(answer.calls, answer.duration_ms);
    } else {
      $("result").textContent = "error";
      $("result").className = "bad";
      let detail = `HTTP ${response.status}: ${answer.error}`;
      if (answer.position) {
        detail += "\n" + expression + "\n" + " ".repeat(answer.position - 1) + "^";
      }
      $("error").textContent = detail;
      $("error").hidden = false;
      showCalls(answer.calls || [], 0);
    }
  } catch (failure) {
    $("result").textContent = "error";
    $("result").className = "bad";
    $("error").textContent = "The front end did not answer: " + failure;
    $("error").hidden = false;
  } finally {
    $("go").disabled = false;
  }
}

async function refreshHealth() {
  const list = $("health");
  try {
    const response = await fetch("/health", { headers: { "Accept": "application/json" } });
    const health = await response.json();
    list.replaceChildren();
    for (const [name, dep] of Object.entries(health.dependencies)) {
      const item = text("li", "", dep.status === "ok" ? "up" : "down");
      item.append(text("strong", name), text("span", " " + dep.url, "mono"),
        text("span", dep.status === "ok" ? ` ok (${dep.latency_ms.toFixed(1)} ms)` :
          ` ${dep.status}: ${dep.error || ""}`));
      list.append(item);
    }
  } catch (failure) {
    list.replaceChildren(text("li", "health check failed: " + failure, "down"));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("calc").addEventListener("submit", calculate);
  $("refresh").addEventListener("click", refreshHealth);
  refreshHealth();
});
