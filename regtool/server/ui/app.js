// regtool's web page: reads the JSON below /ui/api and draws the page for the URL's path.
// Every string from the storage goes into the page as text (textContent, setAttribute),
// never as markup. Links are plain URLs: each page is bookmarkable, the back button works.
"use strict";

const main = document.getElementById("app");
const PAGE = 100;

// -- building blocks ---------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children) node.append(child);
  return node;
}

function segments(name) {
  return name.split("/").map(encodeURIComponent).join("/");
}

function repositoryHref(name) {
  return "/ui/repository/" + segments(name);
}

function imageHref(name, ref, platform) {
  const query = platform ? "?platform=" + encodeURIComponent(platform) : "";
  return "/ui/image/" + segments(name) + "/" + encodeURIComponent(ref) + query;
}

function shortName(name) {
  return name.startsWith("library/") ? name.slice(8) : name;
}

function shortTime(stamp) {
  return stamp ? stamp.slice(0, 16).replace("T", " ") : "-";
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function failed(error) {
  return el("p", { class: "error", role: "alert" }, String(error.message || error));
}

class Unavailable extends Error {}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  let doc = null;
  try {
    doc = await response.json();
  } catch (_) {
    doc = null;
  }
  if (response.status === 503) throw new Unavailable("the storage summary is being computed");
  if (!response.ok) {
    const first = doc && doc.errors && doc.errors[0];
    throw new Error(first ? first.message : `HTTP ${response.status}`);
  }
  return doc;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// fetch, waiting (up to a minute) while the server computes its first summary
async function patient(path, onWait) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await api(path);
    } catch (error) {
      if (!(error instanceof Unavailable) || attempt > 60) throw error;
      if (onWait) onWait();
      await sleep(1000);
    }
  }
}

function table(headers, rows, label) {
  const head = el("tr", {}, headers.map(([text, cls]) => el("th", { scope: "col", class: cls }, text)));
  return el("div", { class: "table-wrap" },
    el("table", { "aria-label": label }, el("thead", {}, head), el("tbody", {}, rows)));
}

function cell(content, cls) {
  return el("td", { class: cls }, content);
}

// -- home: summary, chart, repositories --------------------------------------------------
async function home() {
  document.title = "regtool: storage";
  const params = new URLSearchParams(location.search);
  const state = { q: params.get("q") || "", offset: Number(params.get("offset")) || 0, seq: 0 };
  const summaryBox = el("section", { "aria-labelledby": "summary-h" },
    el("h2", { id: "summary-h" }, "Storage"), el("p", { class: "status" }, "Computing…"));
  const chartBox = el("section", { "aria-labelledby": "chart-h" },
    el("h2", { id: "chart-h" }, "Space per repository"));
  const search = el("input", {
    type: "search", id: "q", name: "q", value: state.q, autocomplete: "off",
    placeholder: "name or glob (centos*)", "aria-controls": "repositories",
  });
  const listBox = el("div", { id: "repositories", "aria-live": "polite" },
    el("p", { class: "status" }, "Loading repositories…"));
  show(
    el("h1", {}, "Registry storage"),
    summaryBox,
    chartBox,
    el("section", { "aria-labelledby": "repos-h" },
      el("h2", { id: "repos-h" }, "Repositories"),
      el("form", { class: "search", role: "search", action: "/ui/" },
        el("label", { for: "q" }, "Filter"), search),
      listBox),
  );
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.q = search.value.trim();
      state.offset = 0;
      const url = state.q ? "/ui/?q=" + encodeURIComponent(state.q) : "/ui/";
      history.replaceState(null, "", url);
      loadList(state, listBox);
    }, 120);
  });
  loadList(state, listBox);
  loadSummary(summaryBox, chartBox);
}

async function loadList(state, box) {
  const seq = ++state.seq;
  const query = new URLSearchParams({ q: state.q, offset: String(state.offset), limit: String(PAGE) });
  let doc;
  try {
    doc = await patient("/ui/api/repositories?" + query, () => {
      if (seq === state.seq) box.replaceChildren(el("p", { class: "status" }, "Computing sizes…"));
    });
  } catch (error) {
    if (seq === state.seq) box.replaceChildren(failed(error));
    return;
  }
  if (seq !== state.seq) return; // a newer search is on its way
  const rows = doc.repositories.map((repo) => el("tr", {},
    cell(el("a", { href: repositoryHref(repo.repository) }, repo.name)),
    cell(repo.tags, "num"),
    cell(repo.size_human, "num"),
    cell(repo.exclusive_human, "num"),
    cell(repo.shared_human, "num"),
  ));
  const first = doc.matched ? doc.offset + 1 : 0;
  const last = doc.offset + doc.repositories.length;
  const counts = el("p", { class: "note" },
    `${first}–${last} of ${doc.matched}` + (doc.q ? ` matching (${doc.total} in all)` : ""));
  const pager = el("nav", { class: "pager", "aria-label": "pages" });
  const pageHref = (offset) => {
    const q = new URLSearchParams();
    if (doc.q) q.set("q", doc.q);
    if (offset) q.set("offset", String(offset));
    const text = q.toString();
    return "/ui/" + (text ? "?" + text : "");
  };
  if (doc.offset > 0) pager.append(el("a", { href: pageHref(Math.max(0, doc.offset - PAGE)) }, "Previous"));
  if (last < doc.matched) pager.append(el("a", { href: pageHref(last) }, "Next"));
  box.replaceChildren(counts, table(
    [["Repository"], ["Tags", "num"], ["Size", "num"], ["Exclusive", "num"], ["Shared", "num"]],
    rows, "repositories"), pager);
}

async function loadSummary(box, chartBox) {
  for (let attempt = 0; attempt < 600; attempt++) {
    let doc;
    try {
      doc = await api("/ui/api/summary");
    } catch (error) {
      box.replaceChildren(box.firstChild, failed(error));
      return;
    }
    if (doc.state !== "computing") {
      drawSummary(box, doc.summary);
      drawChart(chartBox, doc.chart);
    }
    if (doc.state === "ready") return;
    await sleep(2000);
  }
}

function drawSummary(box, s) {
  const card = (term, value, id) => el("div", { id }, el("dt", {}, term), el("dd", {}, value));
  const pending = "computing…";
  const cards = el("dl", { class: "cards" },
    card("Stored (blobs)", s.stored_bytes === null ? pending : s.stored_bytes_human, "stored"),
    card("Tags need", s.tagged_bytes_human, "tagged"),
    card("Saved by sharing", s.saved_bytes_human, "saved"),
    card("gc would free now", s.gc_bytes === null ? pending : s.gc_bytes_human, "gc"),
    card("Untagged manifests", s.untagged_manifests === null ? pending : String(s.untagged_manifests), "untagged"),
    card("Repositories / tags", `${s.repositories} / ${s.tags}`, "counts"),
  );
  const when = new Date(s.computed_at * 1000);
  const notes = [
    el("p", { class: "note" },
      `Computed ${when.toLocaleString()} in ${s.seconds.toFixed(1)} s. ` +
      "Stored counts every blob the tags need plus what `gc --delete-untagged` would free" +
      (s.untagged_bytes !== null ? ` (${s.untagged_bytes_human})` : "") + "."),
  ];
  if (s.gc_problems) notes.push(el("p", { class: "warn" }, `gc would refuse: ${s.gc_problems} live objects cannot be read (run regtool verify).`));
  if (s.error) notes.push(el("p", { class: "error" }, "Last computation failed: " + s.error));
  box.replaceChildren(box.firstChild, cards, ...notes);
}

function drawChart(box, rows) {
  const heading = box.firstChild;
  if (!rows.length) {
    box.replaceChildren(heading, el("p", { class: "status" }, "No repositories."));
    return;
  }
  const width = 800, labelWidth = 220, rowHeight = 20, barWidth = width - labelWidth - 90;
  const largest = Math.max(...rows.map((r) => r.size), 1);
  const chart = svg("svg", {
    class: "chart", viewBox: `0 0 ${width} ${rows.length * rowHeight + 4}`, role: "img",
    "aria-labelledby": "chart-title",
  });
  const title = svg("title", { id: "chart-title" });
  title.textContent = "Bytes per repository, largest first: exclusive (dark) and shared with other repositories (light)";
  chart.append(title);
  rows.forEach((row, i) => {
    const y = i * rowHeight + 2;
    const label = svg("text", { x: labelWidth - 6, y: y + 14, "text-anchor": "end" });
    label.textContent = row.name.length > 32 ? row.name.slice(0, 31) + "…" : row.name;
    const ex = (row.exclusive / largest) * barWidth;
    const sh = (row.shared / largest) * barWidth;
    const group = svg("g", {});
    const tip = svg("title", {});
    tip.textContent = `${row.name}: ${row.size_human} (${row.exclusive_human} exclusive, ${row.shared_human} shared)`;
    group.append(tip, label,
      svg("rect", { class: "exclusive", x: labelWidth, y: y + 3, width: ex, height: rowHeight - 6 }),
      svg("rect", { class: "shared", x: labelWidth + ex, y: y + 3, width: sh, height: rowHeight - 6 }));
    const size = svg("text", { x: labelWidth + ex + sh + 6, y: y + 14 });
    size.textContent = row.size_human;
    group.append(size);
    chart.append(group);
  });
  const legend = el("p", { class: "legend note" },
    el("span", { class: "exclusive" }), "exclusive (no other repository needs it)",
    el("span", { class: "shared" }), "shared with other repositories");
  box.replaceChildren(heading, chart, legend);
}

// -- a repository ----------------------------------------------------------------------------
async function repositoryPage(name) {
  document.title = `regtool: ${shortName(name)}`;
  show(el("h1", {}, shortName(name)), el("p", { class: "status" }, "Loading…"));
  let doc;
  try {
    doc = await patient("/ui/api/repository/" + segments(name));
  } catch (error) {
    show(el("h1", {}, shortName(name)), failed(error));
    return;
  }
  const facts = el("p", {},
    `${doc.tags} tags, ${doc.size_human} (${doc.exclusive_human} exclusive, ${doc.shared_human} shared with other repositories)`);
  const rows = doc.tag_rows.map((t) => el("tr", {},
    cell(el("a", { href: imageHref(doc.repository, t.tag) }, t.tag)),
    cell(t.digest ? el("a", { href: imageHref(doc.repository, t.digest), title: t.digest }, t.short_digest) : "-", "mono"),
    cell(t.platforms.length ? t.platforms.join(", ") : "-"),
    cell(t.size_human, "num"),
    cell(t.exclusive_human, "num"),
    cell(shortTime(t.created), "num"),
    cell(shortTime(t.pushed), "num hide-narrow"),
  ));
  const warnings = doc.warnings.map((w) => el("p", { class: "warn" }, w));
  show(
    el("p", {}, el("a", { href: "/ui/" }, "All repositories")),
    el("h1", {}, doc.name), facts, ...warnings,
    table([["Tag"], ["Digest"], ["Platforms"], ["Size", "num"], ["Exclusive", "num"],
      ["Created", "num"], ["Pushed", "num hide-narrow"]], rows, "tags"),
  );
}

// -- an image --------------------------------------------------------------------------------
async function imagePage(name, ref, platform) {
  const title = ref.includes(":") ? `${shortName(name)}@${ref.slice(0, 19)}` : `${shortName(name)}:${ref}`;
  document.title = `regtool: ${title}`;
  show(el("h1", {}, title), el("p", { class: "status" }, "Loading…"));
  let doc;
  try {
    const query = platform ? "?platform=" + encodeURIComponent(platform) : "";
    doc = await patient("/ui/api/image/" + segments(name) + "/" + encodeURIComponent(ref) + query);
  } catch (error) {
    show(el("h1", {}, title), failed(error));
    return;
  }
  const report = doc.layers_report;
  const parts = [
    el("p", {}, el("a", { href: repositoryHref(report.repository) }, shortName(report.repository))),
    el("h1", {}, title),
    el("p", { class: "mono" }, report.digest),
  ];
  if (report.platforms.length) {
    const choice = el("p", { class: "platforms" }, "Platform: ");
    for (const p of report.platforms) {
      choice.append(p === report.platform ? el("strong", { "aria-current": "page" }, p)
        : el("a", { href: imageHref(report.repository, ref, p) }, p));
    }
    parts.push(choice);
  }
  parts.push(el("p", {}, `${report.layers.length} layers, ${doc.size_human}`));
  for (const w of report.warnings) parts.push(el("p", { class: "warn" }, w));
  parts.push(el("h2", {}, "Config"), configBlock(doc));
  parts.push(el("h2", {}, "Layers (base first)"), layersTable(report));
  parts.push(el("h2", {}, "Shared with"), sharingPicture(report, doc.sharers));
  if (doc.config_summary && doc.config_summary.history.length) {
    parts.push(el("h2", {}, "History"), historyTable(doc.config_summary.history));
  }
  show(...parts);
}

function configBlock(doc) {
  const c = doc.config_summary;
  if (!c) return el("p", { class: "note" }, doc.config_error || "No config to show (a legacy v1 image or an artifact).");
  const platform = [c.os, c.architecture, c.variant].filter(Boolean).join("/") || "-";
  const list = (items) => (items && items.length ? el("span", { class: "mono" }, JSON.stringify(items)) : "-");
  const env = c.env.length ? el("ul", { class: "plain mono" }, c.env.map((e) => el("li", {}, e))) : "-";
  const pairs = [["OS/arch", platform], ["Created", shortTime(c.created)], ["Entrypoint", list(c.entrypoint)],
    ["Cmd", list(c.cmd)], ["Working dir", c.working_dir || "-"], ["User", c.user || "-"], ["Env", env]];
  return el("dl", { class: "config" }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function sharerLink(label) {
  const cut = label.lastIndexOf(":");
  const repository = label.slice(0, cut), tag = label.slice(cut + 1);
  return el("a", { href: imageHref(repository, tag) }, `${shortName(repository)}:${tag}`);
}

function layersTable(report) {
  const rows = report.layers.map((layer, i) => {
    const sharers = layer.shared_with.length
      ? el("ul", { class: "plain" }, layer.shared_with.map((label) => el("li", {}, sharerLink(label))))
      : "-";
    return el("tr", {},
      cell(i + 1, "num"),
      cell(el("span", { title: layer.digest }, layer.short_digest), "mono"),
      cell(layer.size_human, "num"),
      cell(layer.created_by || "-", "wrap mono"),
      cell(sharers),
    );
  });
  return table([["#", "num"], ["Layer"], ["Size", "num"], ["Created by"], ["Shared with"]], rows, "layers");
}

// one row per image sharing a layer with this one, one square per layer of this image
// (base on the left): filled where that image has the layer too
function sharingPicture(report, sharers) {
  if (!sharers.length) return el("p", { class: "note" }, "No other tag shares a layer with this image.");
  const shown = sharers.slice(0, 30);
  const count = report.layers.length, box = 16, gap = 3, labelWidth = 230;
  const width = labelWidth + count * (box + gap) + 120;
  const picture = svg("svg", { class: "picture", width, viewBox: `0 0 ${width} ${(shown.length + 1) * (box + gap) + 4}`, role: "img", "aria-labelledby": "share-title" });
  const title = svg("title", { id: "share-title" });
  title.textContent = "Layers of this image (base on the left) that each other image shares";
  picture.append(title);
  const rowOf = (label, has, y, note) => {
    const text = svg("text", { x: labelWidth - 6, y: y + 12, "text-anchor": "end" });
    text.textContent = label.length > 34 ? label.slice(0, 33) + "…" : label;
    picture.append(text);
    for (let i = 0; i < count; i++) {
      picture.append(svg("rect", { class: has(i) ? "exclusive" : "rest", x: labelWidth + i * (box + gap), y, width: box, height: box }));
    }
    const after = svg("text", { x: labelWidth + count * (box + gap) + 4, y: y + 12 });
    after.textContent = note;
    picture.append(after);
  };
  rowOf("this image", () => true, 2, `${count} layers`);
  shown.forEach((s, n) => {
    rowOf(`${s.name}:${s.tag}`, (i) => report.layers[i].shared_with.includes(s.label),
      (n + 1) * (box + gap) + 2, `${s.layers} (${s.bytes_human})`);
  });
  const links = el("ul", { class: "plain" }, sharers.map((s) => el("li", {}, sharerLink(s.label),
    ` shares ${s.layers} of ${count} layers (${s.bytes_human})` + (s.base ? `, the first ${s.base} from the base` : ""))));
  return el("div", {}, picture, links);
}

function historyTable(history) {
  const rows = history.map((h) => el("tr", {},
    cell(shortTime(h.created), "num"), cell(h.created_by || "-", "wrap mono"), cell(h.empty_layer ? "no layer" : "layer")));
  return table([["Created", "num"], ["Created by"], ["Layer"]], rows, "history");
}

// -- routing ---------------------------------------------------------------------------------
function route() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  const platform = new URLSearchParams(location.search).get("platform");
  if (parts[0] === "ui" && parts[1] === "repository" && parts.length > 2) {
    return repositoryPage(parts.slice(2).join("/"));
  }
  if (parts[0] === "ui" && parts[1] === "image" && parts.length > 3) {
    return imagePage(parts.slice(2, -1).join("/"), parts[parts.length - 1], platform);
  }
  return home();
}

route();
