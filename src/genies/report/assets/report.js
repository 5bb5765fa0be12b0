"use strict";
// genies report: the results table, summary tables and the sample browser. Everything is built
// with DOM nodes and textContent (never innerHTML with data), and large JSON blocks are parsed
// only when the browser first shows them.
(function () {
  const DATA = JSON.parse(document.getElementById("genies-data").textContent);
  const blobs = new Map();
  function blob(id) {
    if (!blobs.has(id)) {
      const node = document.getElementById(id);
      blobs.set(id, node ? JSON.parse(node.textContent) : null);
    }
    return blobs.get(id);
  }

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid == null || kid === false) continue;
      e.append(kid instanceof Node ? kid : String(kid));
    }
    return e;
  }
  const fmt = (v, d = 2) => (v == null || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
  const signed = (v, d = 2) => (v == null || Number.isNaN(v) ? "–" : (v > 0 ? "+" : "") + Number(v).toFixed(d));
  const shiftName = (s, t) => s + " → " + t;
  const uniq = (xs) => [...new Set(xs)];

  function select(id, options, value, onchange) {
    // options: [value, label] pairs, or {group: [[value, label], ...]} for optgroups
    const s = h("select", { id });
    const add = (parent, [v, label]) => parent.append(h("option", { value: v, text: label }));
    if (Array.isArray(options)) options.forEach((o) => add(s, o));
    else for (const [g, opts] of Object.entries(options)) { const og = h("optgroup", { label: g }); opts.forEach((o) => add(og, o)); s.append(og); }
    s.value = value;
    s.addEventListener("change", () => onchange(s.value));
    return s;
  }
  function seg(id, options, value, onchange) {
    const box = h("div", { class: "seg", id, role: "group" });
    const paint = (v) => box.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b.dataset.v === v));
    for (const [v, label] of options) {
      box.append(h("button", { type: "button", "data-v": v, text: label, onclick: () => { paint(v); onchange(v); } }));
    }
    paint(value);
    return box;
  }
  const field = (label, control) => h("label", null, label, control);

  // Highlight every case-insensitive occurrence of q in text, as text nodes and <mark>s.
  function marked(text, q) {
    if (!q) return [text];
    const out = []; const low = text.toLowerCase(); let at = 0;
    for (let i = low.indexOf(q); i !== -1; i = low.indexOf(q, at)) {
      out.push(text.slice(at, i), h("mark", { text: text.slice(i, i + q.length) }));
      at = i + q.length;
    }
    out.push(text.slice(at));
    return out;
  }

  function probBar(p) {
    const color = p < 0.5 ? "#c0392b" : p > 0.5 ? "#2e8b57" : "#8a96a3";
    return h("span", { class: "prob" }, h("span", { class: "track" },
      h("span", { class: "fill", style: `width:${Math.round(p * 100)}%;background:${color}` })), fmt(p, 3));
  }

  // ----- examples and evaluations ------------------------------------------------------------
  function examplesOf(key) { return blob("ex-" + key) || []; }

  // Per-example view of one evaluation: the pairs grouped by example, worst probability, status.
  const evalCache = new Map();
  function evaluationItems(evId) {
    if (evalCache.has(evId)) return evalCache.get(evId);
    const meta = DATA.evals[evId];
    const ev = blob("ev-" + evId);
    const examples = examplesOf(meta.d);
    const items = examples.map((ex, i) => ({ i, ex, pairs: [], scores: ev.s ? ev.s[i] : null }));
    let k = 0;
    if (ev.e) {
      ev.e.forEach((ei, j) => items[ei].pairs.push({ j: ev.r[j], p: ev.p[j] }));
    } else {  // canonical order: example by example, dispreferred responses in order
      examples.forEach((ex, i) => ex[1].forEach((_, j) => { if (j !== ex[2]) items[i].pairs.push({ j, p: ev.p[k++] }); }));
    }
    for (const it of items) {
      const ps = it.pairs.map((q) => q.p).filter((p) => p != null);
      it.worst = ps.length ? Math.min(...ps) : null;
      it.status = it.worst == null ? "na" : it.worst < 0.5 ? "err" : it.worst === 0.5 ? "tie" : "ok";
      it.text = (it.ex[0] + "\n" + it.ex[1].join("\n")).toLowerCase();
      // The model's pick: its highest-scoring response when that is unique, else the response that beat the
      // preferred one most confidently; none for a tie, where the model did not choose.
      const top = it.scores && it.scores.every((x) => x != null) ? Math.max(...it.scores) : null;
      if (top != null && it.scores.filter((x) => x === top).length === 1) it.pick = it.scores.indexOf(top);
      else if (it.status === "err") it.pick = it.pairs.filter((q) => q.p != null).reduce((a, b) => (b.p < a.p ? b : a)).j;
      else if (it.status === "ok") it.pick = it.ex[2];
      else it.pick = null;
    }
    evalCache.set(evId, items);
    return items;
  }
  function plainItems(key) {
    return examplesOf(key).map((ex, i) => ({ i, ex, pairs: [], status: "none", text: (ex[0] + "\n" + ex[1].join("\n")).toLowerCase() }));
  }

  function exampleCard(it, q) {
    const [prompt, responses, preferred] = it.ex;
    const head = h("div", { class: "ex-head" }, h("span", { class: "idx", text: "#" + it.i }));
    if (it.status === "err") head.append(h("span", { class: "badge err", text: "wrong: ranked a dispreferred response higher" }));
    else if (it.status === "ok") head.append(h("span", { class: "badge ok", text: "correct" }));
    else if (it.status === "tie") head.append(h("span", { class: "badge tie", text: "tie (p = 0.5)" }));
    else if (it.status === "na") head.append(h("span", { class: "badge tie", text: "no prediction" }));
    if (it.worst != null) head.append(h("span", null, "P(preferred wins), worst pair: ", probBar(it.worst)));
    head.append(h("span", { class: "pill", text: responses.length + " responses" }));
    // The Alpaca preamble ("Below is an instruction ...") is the same everywhere: dim it so the instruction stands out.
    const cut = /^Below is an instruction[^\n]*\n+/.exec(prompt);
    const promptBox = h("div", { class: "prompt" }, cut ? h("span", { class: "preamble" }, marked(cut[0], q)) : null,
      marked(cut ? prompt.slice(cut[0].length) : prompt, q));
    if (prompt.length > 420 || prompt.split("\n").length > 7) {
      promptBox.append(h("button", { type: "button", class: "more", text: "show all", onclick: (e) => {
        const open = promptBox.classList.toggle("open"); e.target.textContent = open ? "show less" : "show all"; } }));
    } else promptBox.classList.add("open");
    const byResp = new Map(it.pairs.map((pr) => [pr.j, pr.p]));
    const resps = h("div", { class: "resps" });
    responses.forEach((text, j) => {
      const isPref = j === preferred; const p = byResp.get(j);
      const beats = !isPref && p != null && p < 0.5;
      const isPick = it.status !== "none" && it.pick === j;
      const rh = h("div", { class: "rh" }, h("span", { text: "response " + (j + 1) }));
      if (isPref) rh.append(h("span", { class: "tag pref", text: "PREFERRED" }));
      if (isPick && !isPref) rh.append(h("span", { class: "tag pick", text: "MODEL'S PICK" }));
      if (isPick && isPref) rh.append(h("span", { text: "model's pick ✓" }));
      if (!isPref && p != null) rh.append(h("span", null, "P(preferred over this) ", probBar(p)));
      if (it.scores && it.scores[j] != null) rh.append(h("span", { text: "score " + fmt(it.scores[j], 3) }));
      resps.append(h("div", { class: "resp" + (isPref ? " pref" : "") + (beats ? " beats" : "") + (isPick && !isPref ? " pick" : "") },
        rh, h("div", { class: "rt" }, marked(text, q))));
    });
    return h("div", { class: "ex " + (it.status === "err" ? "err" : it.status === "ok" ? "ok" : ""), "data-index": it.i }, head, promptBox, resps);
  }

  function filterItems(items, st) {
    const q = st.q;
    let out = items.filter((it) => (!q || it.text.includes(q)) &&
      (st.filter === "all" || (st.filter === "errors" ? it.status === "err" || it.status === "tie" : it.status === "ok")));
    if (st.sort === "confident") out = out.slice().sort((a, b) => (a.worst ?? 2) - (b.worst ?? 2));
    else if (st.sort === "uncertain") out = out.slice().sort((a, b) => Math.abs((a.worst ?? 2) - 0.5) - Math.abs((b.worst ?? 2) - 0.5));
    return out;
  }

  function pager(st, total, rerender) {
    const pages = Math.max(1, Math.ceil(total / st.size));
    st.page = Math.min(st.page, pages - 1);
    const go = (d) => { st.page = Math.max(0, Math.min(pages - 1, st.page + d)); rerender(); };
    return h("div", { class: "pager" },
      h("button", { type: "button", id: "b-prev", text: "‹ prev", disabled: st.page === 0, onclick: () => go(-1) }),
      h("span", { id: "b-page", text: `page ${st.page + 1} / ${pages}` }),
      h("button", { type: "button", id: "b-next", text: "next ›", disabled: st.page >= pages - 1, onclick: () => go(1) }),
      select("b-size", [["10", "10 / page"], ["25", "25 / page"], ["50", "50 / page"]], String(st.size), (v) => { st.size = +v; st.page = 0; rerender(); }));
  }

  function searchBox(st, rerender) {
    let timer = null;
    const input = h("input", { type: "search", id: "b-q", placeholder: "search prompts and responses", value: st.q });
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { st.q = input.value.trim().toLowerCase(); st.page = 0; rerender(); }, 120); });
    return input;
  }

  // ----- report mode ---------------------------------------------------------------------------
  function initReport() {
    const runs = DATA.runs; const rows = DATA.rows;
    rows.forEach((r, k) => { r.k = k; r.shift = shiftName(r.source, r.target); r.runLabel = runs[r.run].label; });
    const refModels = DATA.reference ? DATA.reference.models : [];
    // published DE per (run, model, our intervention, shift): like-for-like pairs only, as compared
    const refDE = new Map((DATA.reference ? DATA.reference.rows : []).map((x) => [x.r + "|" + x.m + "|" + x.i + "|" + x.s + "|" + x.t, x]));
    const categories = uniq(rows.map((r) => r.category)); const families = uniq(rows.map((r) => r.family));
    const interventions = uniq(runs.flatMap((r) => r.interventions).concat(rows.map((r) => r.intervention)));
    // zero-shot is the baseline (DE 0 by construction): start on the first trained intervention
    const firstInt = interventions.find((i) => i !== "zero_shot") || interventions[0] || "*";

    renderSummary(runs, rows, interventions);

    // results table
    const t = { run: "0", intervention: firstInt, category: "*", family: "*", q: "", sortKey: null, asc: true, ref: refModels[refModels.length - 1] || "" };
    const cols = [
      runs.length > 1 && { key: "runLabel", label: "run", text: true },
      { key: "intervention", label: "intervention", text: true },
      { key: "shift", label: "shift (source → target)", text: true },
      { key: "category", label: "category", text: true },
      { key: "family", label: "family", text: true },
      { key: "de", label: "DE", signed: true, ci: ["de_lo", "de_hi"], title: "differential elicitation = (gen. acc − zero-shot acc) / target-tuned, with its 95 % interval (target and reference prompts resampled)" },
      { key: "ga", label: "gen. acc", title: "accuracy on the target after training on the source", ci: ["ci_lo", "ci_hi"] },
      { key: "base", label: "zero-shot", title: "zero-shot baseline accuracy on the target" },
      { key: "att", label: "target-tuned", title: "target-tuned capability (upper reference)" },
      { key: "elic", label: "elicitation", title: "gen. acc / target-tuned" },
      { key: "src", label: "source ID", title: "accuracy on the source's own test split" },
      { key: "ece", label: "ECE" }, { key: "brier", label: "Brier" },
      refModels.length && { key: "refde", label: "published DE", signed: true, title: "the published GENIES DE of the comparable method for this shift, as compared (recomputed with LoRA's target-tuned capability for a default-mode run); empty where nothing is comparable" },
      { key: "flag", label: "length cue", text: true, title: "a length-only ranking already solves the target" },
    ].filter(Boolean);
    rows.forEach((r) => { r.flag = r.len_flag ? "yes" : ""; });
    const controls = document.getElementById("table-controls");
    const runOpts = runs.map((r, k) => [String(k), r.label]); if (runs.length > 1) runOpts.push(["*", "all runs"]);
    if (runs.length > 1) controls.append(field("run", select("f-run", runOpts, t.run, (v) => { t.run = v; drawTable(); })));
    controls.append(
      field("intervention", select("f-int", [["*", "all interventions"], ...interventions.map((i) => [i, i])], t.intervention, (v) => { t.intervention = v; drawTable(); })),
      field("category", select("f-cat", [["*", "all categories"], ...categories.map((c) => [c, c])], "*", (v) => { t.category = v; drawTable(); })),
      field("family", select("f-fam", [["*", "all families"], ...families.map((c) => [c, c])], "*", (v) => { t.family = v; drawTable(); })));
    if (refModels.length) controls.append(field("published model", select("f-ref", refModels.map((m) => [m, m]), t.ref, (v) => { t.ref = v; drawTable(); })));
    const q = h("input", { type: "search", id: "f-q", placeholder: "filter shifts" });
    q.addEventListener("input", () => { t.q = q.value.trim().toLowerCase(); drawTable(); });
    controls.append(field("shift", q));

    const table = document.getElementById("results-table");
    const thead = h("thead"); const hr = h("tr"); thead.append(hr);
    for (const c of cols) {
      hr.append(h("th", { class: c.text ? "t" : null, title: c.title, "data-key": c.key, text: c.label, onclick: () => {
        if (t.sortKey === c.key) t.asc = !t.asc; else { t.sortKey = c.key; t.asc = !!c.text; }
        hr.querySelectorAll("th").forEach((th) => { th.classList.toggle("sorted", th.dataset.key === t.sortKey); th.classList.toggle("asc", th.dataset.key === t.sortKey && t.asc); });
        drawTable(); } }));
    }
    const tbody = h("tbody"); table.append(thead, tbody);
    const counter = document.getElementById("table-count");

    function drawTable() {
      rows.forEach((r) => {
        const x = refDE.get(r.run + "|" + t.ref + "|" + r.intervention + "|" + r.source + "|" + r.target);
        r.refde = x ? x.de : null;
        r.refnote = x ? `published ${x.p}; as printed ${signed(x.printed)}` : null;  // shown on hover
      });
      let shown = rows.filter((r) => (t.run === "*" || String(r.run) === t.run) && (t.intervention === "*" || r.intervention === t.intervention)
        && (t.category === "*" || r.category === t.category) && (t.family === "*" || r.family === t.family) && (!t.q || r.shift.toLowerCase().includes(t.q)));
      if (t.sortKey) {
        const key = t.sortKey; const dir = t.asc ? 1 : -1;
        shown = shown.slice().sort((a, b) => {
          const x = a[key], y = b[key];
          if (x == null) return 1; if (y == null) return -1;
          return (typeof x === "string" ? x.localeCompare(y) : x - y) * dir;
        });
      }
      const frag = document.createDocumentFragment();
      for (const r of shown) {
        const tr = h("tr", { "data-row": r.k, title: "click to browse this shift's examples", onclick: () => browser.open(r) });
        for (const c of cols) {
          const v = r[c.key];
          if (c.text) tr.append(h("td", { class: "t" }, c.key === "flag" && v ? h("span", { class: "pill flag", text: "length cue" }) : v));
          else {
            const td = h("td", { class: c.signed && v != null ? (v < 0 ? "neg" : v > 0 ? "pos" : null) : null, text: c.signed ? signed(v) : fmt(v), title: c.key === "refde" ? r.refnote : null });
            const [lo, hi] = c.ci ? [r[c.ci[0]], r[c.ci[1]]] : [null, null];
            if (lo != null) td.append(" ", h("span", { class: "ci", text: c.signed ? `[${signed(lo, 2)}, ${signed(hi, 2)}]` : `[${fmt(lo, 2)}, ${fmt(hi, 2)}]` }));
            tr.append(td);
          }
        }
        frag.append(tr);
      }
      if (!shown.length) frag.append(h("tr", null, h("td", { class: "empty", colspan: cols.length, text: rows.length ? "no row matches" : "no data" })));
      tbody.replaceChildren(frag);
      counter.textContent = `${shown.length} of ${rows.length} rows · click a row to see its examples`;
    }
    drawTable();

    const browser = reportBrowser(runs, rows, interventions, firstInt);
  }

  function renderSummary(runs, rows, interventions) {
    const box = document.getElementById("summary-table");
    if (!box) return;
    const agg = new Map(DATA.aggregates.filter((a) => a.scope === "all").map((a) => [a.run + "|" + a.intervention, a]));
    const table = h("table", { class: "summary" });
    const hr = h("tr", null, h("th", { class: "t", text: "intervention" }));
    runs.forEach((r) => hr.append(h("th", { text: "mean DE · " + r.label }), h("th", { text: "gen. acc" })));
    table.append(h("thead", null, hr));
    const tb = h("tbody");
    for (const i of interventions) {
      const tr = h("tr", null, h("td", { class: "t", text: i }));
      runs.forEach((r, k) => {
        const a = agg.get(k + "|" + i);
        const td = h("td", { class: a && a.mean_de < 0 ? "neg" : a && a.mean_de > 0 ? "pos" : null, text: a ? signed(a.mean_de) : "–" });
        if (a && a.ci_low != null) td.append(" ", h("span", { class: "ci", text: `[${signed(a.ci_low)}, ${signed(a.ci_high)}]` }));
        tr.append(td, h("td", { text: a ? fmt(a.mean_generalization_accuracy) : "–" }));
      });
      tb.append(tr);
    }
    table.append(tb);
    box.append(h("div", { class: "tablewrap fit" }, table));
  }

  function reportBrowser(runs, rows, interventions, firstInt) {
    const root = document.getElementById("browser");
    const first = rows.find((r) => r.intervention === firstInt) || rows[0] || {};
    const st = { run: String(first.run ?? 0), intervention: first.intervention, shift: first.shift, which: "ev_t", filter: "all", sort: "index", q: "", page: 0, size: 10 };
    const controls = h("div", { class: "controls", id: "browser-controls" });
    const status = h("div", { class: "browser-status" });
    const list = h("div", { id: "ex-list" });
    root.append(controls, status, list);

    function shiftOptions() {
      const groups = {};
      for (const r of rows) if (String(r.run) === st.run && r.intervention === st.intervention) (groups[r.category] ||= []).push([r.shift, r.shift]);
      return groups;
    }
    function drawControls() {
      const kids = [];
      if (runs.length > 1) kids.push(field("run", select("b-run", runs.map((r, k) => [String(k), r.label]), st.run, (v) => { st.run = v; st.page = 0; drawControls(); draw(); })));
      kids.push(field("intervention", select("b-int", interventions.map((i) => [i, i]), st.intervention, (v) => { st.intervention = v; st.page = 0; drawControls(); draw(); })));
      kids.push(field("shift", select("b-shift", shiftOptions(), st.shift, (v) => { st.shift = v; st.page = 0; draw(); })));
      const kinds = [["ev_t", "target"], ["ev_s", "source (in-distribution)"], ["ev_b", "zero-shot on target"], ["ev_r", "target-tuned reference"]]
        .filter(([k]) => rows.some((r) => r[k] != null));
      if (kinds.length > 1) kids.push(field("evaluation", seg("b-which", kinds, st.which, (v) => { st.which = v; st.page = 0; draw(); })));
      kids.push(field("show", seg("b-filter", [["all", "all"], ["errors", "errors"], ["correct", "correct"]], st.filter, (v) => { st.filter = v; st.page = 0; draw(); })));
      kids.push(field("order", select("b-sort", [["index", "dataset order"], ["confident", "most confident errors first"], ["uncertain", "least confident first"]], st.sort, (v) => { st.sort = v; st.page = 0; draw(); })));
      kids.push(field("search", searchBox(st, draw)));
      controls.replaceChildren(...kids);
      const shiftSel = controls.querySelector("#b-shift");
      if (shiftSel.value !== st.shift) st.shift = shiftSel.value;
    }
    let draw = function () {
      const row = rows.find((r) => String(r.run) === st.run && r.intervention === st.intervention && r.shift === st.shift);
      const evId = row ? row[st.which] : null;
      if (evId == null || !DATA.evals[evId]) {
        status.replaceChildren(h("span", { id: "b-status", text: "no evaluation stored for this choice" }));
        list.replaceChildren(h("div", { class: "empty", text: "This run has no per-example evaluation for this shift and intervention." }));
        return;
      }
      const meta = DATA.evals[evId];
      const items = evaluationItems(evId);
      const shown = filterItems(items, st);
      const errors = items.filter((it) => it.status === "err" || it.status === "tie").length;
      const page = shown.slice(st.page * st.size, (st.page + 1) * st.size);
      status.replaceChildren(
        h("span", { id: "b-status" }, h("b", { text: meta.label }), ` · ${items.length} examples, ${errors} with an error · pair accuracy ${fmt(meta.acc)} · showing ${shown.length}`,
          meta.info ? h("div", { class: "reported", text: "reported by the method: " + meta.info }) : null),
        pager(st, shown.length, draw));
      list.replaceChildren(...(page.length ? page.map((it) => exampleCard(it, st.q)) : [h("div", { class: "empty", text: "No example matches." })]));
    }
    // The browser's state lives in the URL fragment (#samples/run=0&intervention=lora&shift=...),
    // so a link shows the same examples; written after each change, never on the first draw, so
    // opening the page at #results keeps its anchor.
    const HASH = "#samples/";
    const KEYS = ["run", "intervention", "shift", "which", "filter", "sort", "q", "page"];
    let restored = false;
    if (location.hash.startsWith(HASH)) {
      const saved = new URLSearchParams(location.hash.slice(HASH.length));
      for (const k of KEYS) if (saved.has(k)) st[k] = k === "page" ? Math.max(0, parseInt(saved.get(k), 10) || 0) : saved.get(k);
      restored = true;
    }
    let draws = 0;
    const drawAndRemember = draw;
    draw = function () {
      drawAndRemember();
      if (draws++ > 0) history.replaceState(null, "", HASH + new URLSearchParams(KEYS.map((k) => [k, String(st[k])])).toString());
    };
    drawControls(); draw();
    if (restored) root.scrollIntoView({ behavior: "instant", block: "start" });
    return {
      open(r) {
        Object.assign(st, { run: String(r.run), intervention: r.intervention, shift: r.shift, page: 0 });
        drawControls(); draw();
        document.getElementById("samples").scrollIntoView({ behavior: "instant", block: "start" });
      },
    };
  }

  // ----- dataset browser mode (genies data browse) -------------------------------------------
  function initBrowse() {
    const root = document.getElementById("browser");
    const dists = DATA.dists; const shifts = DATA.shifts;
    const st = { view: shifts.length ? "shift" : "dist", dist: dists.length ? dists[0].name : "", shift: shifts.length ? shifts[0].name : "",
      split: DATA.splits.includes("test") ? "test" : DATA.splits[0], q: "", page: 0, size: 10, filter: "all", sort: "index" };
    const controls = h("div", { class: "controls", id: "browser-controls" });
    const status = h("div", { class: "browser-status" });
    const list = h("div", { id: "ex-list" });
    root.append(controls, status, list);
    const byName = new Map(dists.map((d) => [d.name, d]));
    function drawControls() {
      const kids = [];
      if (shifts.length) kids.push(field("view", seg("b-view", [["shift", "shift: source | target"], ["dist", "one distribution"]], st.view, (v) => { st.view = v; st.page = 0; drawControls(); draw(); })));
      if (st.view === "shift") {
        const groups = {}; shifts.forEach((s) => (groups[s.category] ||= []).push([s.name, s.name]));
        kids.push(field("shift", select("b-shift", groups, st.shift, (v) => { st.shift = v; st.page = 0; draw(); })));
      } else kids.push(field("distribution", select("b-dist", dists.map((d) => [d.name, d.name]), st.dist, (v) => { st.dist = v; st.page = 0; draw(); })));
      if (DATA.splits.length > 1) kids.push(field("split", seg("b-split", DATA.splits.map((s) => [s, s]), st.split, (v) => { st.split = v; st.page = 0; draw(); })));
      kids.push(field("search", searchBox(st, draw)));
      controls.replaceChildren(...kids);
    }
    function column(name, title) {
      const d = byName.get(name);
      const key = d && d.blobs[st.split];
      const items = key != null ? filterItems(plainItems(key), st) : [];
      return { name, title, items, total: key != null ? examplesOf(key).length : 0, missing: key == null };
    }
    function draw() {
      let cols;
      if (st.view === "shift") {
        const s = shifts.find((x) => x.name === st.shift) || shifts[0];
        cols = [column(s.source, "source"), column(s.target, "target")];
        if (s.target_reference && s.target_reference !== s.target) cols[1].note = "target-tuned reference: " + s.target_reference;
      } else cols = [column(st.dist, "distribution")];
      const longest = Math.max(...cols.map((c) => c.items.length));
      status.replaceChildren(h("span", { id: "b-status", text: cols.map((c) => `${c.title} ${c.name}: ${c.items.length} of ${c.total}`).join(" · ") }), pager(st, longest, draw));
      const grid = h("div", { class: "excols" + (cols.length > 1 ? " two" : "") });
      for (const c of cols) {
        const page = c.items.slice(st.page * st.size, (st.page + 1) * st.size);
        grid.append(h("div", { class: "excol" }, h("div", { class: "colhead", text: `${c.title}: ${c.name} (${st.split})` }), c.note ? h("p", { class: "note", text: c.note }) : null,
          c.missing ? h("div", { class: "empty", text: `${c.name} has no ${st.split} split in this file.` })
            : page.length ? page.map((it) => exampleCard(it, st.q)) : h("div", { class: "empty", text: "No example matches." })));
      }
      list.replaceChildren(grid);
    }
    drawControls(); draw();
  }

  try {
    if (DATA.mode === "browse") initBrowse(); else initReport();
  } finally {
    window.__geniesReadyMs = performance.now();
    document.body.setAttribute("data-ready", "1");
  }
})();
