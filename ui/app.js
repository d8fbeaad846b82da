// The page's only script (served at /-/ui/app.js; see src/handlers/page.ts). No build step, no
// library. It keeps the server-rendered table current from the service's own JSON: GET / (labels,
// last change, TTL deadlines), GET /-/http_sd (target lists) and, with PROMETHEUS_URL, GET /-/status
// (health). Every registered value goes into the page with textContent, never as markup.
"use strict";

(() => {
  const REFRESH_MS = 2000;
  const health = document.body.dataset.health === "on";
  const filter = document.getElementById("filter");
  const tbody = document.querySelector("#groups tbody");
  const summary = document.getElementById("summary");
  const empty = document.getElementById("empty");
  let lastModel = "";
  let problem = "";

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function shownTime(iso) {
    return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
  }

  function untilText(iso) {
    const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    if (!Number.isFinite(seconds)) return "";
    if (seconds <= 0) return "expiring";
    if (seconds < 120) return `expires in ${seconds} s`;
    if (seconds < 7200) return `expires in ${Math.round(seconds / 60)} min`;
    return `expires in ${Math.round(seconds / 3600)} h`;
  }

  async function getJson(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(`${path}: ${response.status} ${body.message || response.statusText}`);
    return body;
  }

  /** One list of groups from the three answers, keyed like the rows: `<application>@<environment>`. */
  function modelOf(index, httpSd, status) {
    const groups = new Map();
    for (const line of index.groups || []) {
      groups.set(`${line.application}@${line.environment}`, {
        application: line.application,
        environment: line.environment,
        labels: line.labels || {},
        changedAt: line.changedAt || "",
        // A Map: a target may be named __proto__ or constructor (src/model.ts, keys from clients).
        expires: new Map(Object.entries(line.expires || {})),
        targets: [],
      });
    }
    for (const group of httpSd) {
      const labels = group.labels || {};
      const key = `${labels.__meta_filesd_application}@${labels.__meta_filesd_environment}`;
      const known = groups.get(key);
      if (known) known.targets = group.targets.map((target) => ({ target, servers: [] }));
    }
    if (status) {
      for (const groupStatus of status.groups || []) {
        const known = groups.get(`${groupStatus.application}@${groupStatus.environment}`);
        if (!known) continue;
        for (const target of known.targets) {
          const seen = (groupStatus.targets || []).find((candidate) => candidate.target === target.target);
          if (seen) target.servers = seen.servers;
        }
      }
    }
    return [...groups.values()];
  }

  function healthCell(server, many) {
    const item = element("span", "health");
    item.dataset.health = server.health;
    item.title = server.prometheus;
    item.append(element("span", "dot"), element("span", "word", many ? `${server.health} (${server.prometheus})` : server.health));
    return item;
  }

  function row(group) {
    const tr = element("tr");
    tr.dataset.key = `${group.application}@${group.environment}`;
    const name = element("th");
    name.scope = "row";
    name.append(element("span", "application", group.application), " / ", element("span", "environment", group.environment));

    const targets = element("ul", "targets");
    for (const target of group.targets) {
      const li = element("li");
      li.append(element("span", "target", target.target));
      const deadline = group.expires.get(target.target);
      if (deadline) {
        const time = element("time", "expires", untilText(deadline));
        time.dateTime = deadline;
        time.title = `expires ${shownTime(deadline)}`;
        li.append(" ", time);
      }
      if (target.servers.length > 0) {
        const healths = element("span", "healths");
        for (const server of target.servers) healths.append(healthCell(server, target.servers.length > 1));
        li.append(" ", healths);
        for (const server of target.servers) {
          if (server.error) li.append(element("p", "error", target.servers.length > 1 ? `${server.prometheus}: ${server.error}` : server.error));
        }
      }
      targets.append(li);
    }

    const labels = element("ul", "labels");
    for (const [labelName, value] of Object.entries(group.labels)) {
      const li = element("li");
      li.append(element("span", "name", labelName), "=", element("span", "value", value));
      labels.append(li);
    }

    const changed = element("time", "", group.changedAt ? shownTime(group.changedAt) : "");
    if (group.changedAt) changed.dateTime = group.changedAt;

    const cells = [name, element("td"), element("td"), element("td")];
    cells[1].append(targets);
    cells[2].append(labels);
    cells[3].append(changed);
    tr.append(...cells);
    return tr;
  }

  /** Every word of the filter must appear somewhere in the row's text (case-insensitive). */
  function applyFilter() {
    const words = filter.value.toLowerCase().split(/\s+/).filter((word) => word !== "");
    let shown = 0;
    let targets = 0;
    for (const tr of tbody.rows) {
      const text = tr.textContent.toLowerCase();
      const visible = words.every((word) => text.includes(word));
      tr.hidden = !visible;
      if (visible) {
        shown++;
        targets += tr.querySelectorAll(".targets > li").length;
      }
    }
    const total = tbody.rows.length;
    const counted = shown === total ? `${total} application/environments, ${targets} targets` : `${shown} of ${total} application/environments shown, ${targets} targets`;
    const text = problem ? `${counted}. ${problem}` : health ? counted : `${counted}. Health needs PROMETHEUS_URL.`;
    // A live region: touch it only when the words change, or a screen reader repeats it every refresh.
    if (summary.textContent !== text) summary.textContent = text;
    empty.hidden = total !== 0;
  }

  async function refresh() {
    try {
      const [index, httpSd, status] = await Promise.all([
        getJson("/"),
        getJson("/-/http_sd"),
        health ? getJson("/-/status").catch((error) => ({ error })) : Promise.resolve(undefined),
      ]);
      const statusProblem = status && status.error ? `Health unavailable: ${status.error.message}` : "";
      const model = modelOf(index, httpSd, status && !status.error ? status : undefined);
      const text = JSON.stringify(model);
      // Only touch the table when something changed (a selection survives), or when deadlines count down.
      const deadlines = model.some((group) => group.expires.size > 0);
      if (text !== lastModel || deadlines) {
        lastModel = text;
        tbody.replaceChildren(...model.map(row));
      }
      problem = statusProblem;
    } catch (error) {
      problem = `Could not reach the service (${error.message}); retrying.`;
    }
    applyFilter();
  }

  async function loop() {
    await refresh();
    setTimeout(loop, REFRESH_MS);
  }

  filter.addEventListener("input", applyFilter);
  loop();
})();
