// bertstory viewer: plain JavaScript, no library, no network. The data is the JSON in #bertstory-data
// (written by bertstory/viewer/page.py): per run its corpus tables and per saved segment its tokens,
// its maps (L, H, n, n) as base64 float16 or uint8 (C order: layer, head, query i, key j) and its statistics.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("bertstory-data").textContent);
  const $ = (id) => document.getElementById(id);
  const state = { run: 0, seg: 0, layer: 0, head: 0, view: "heatmap", diff: false, gamma: 1,
                  hover: null, pinned: null, metric: null, scope: "corpus" };

  // ------------------------------------------------------------------ decoding
  const HALF = (function () {  // float16 bit pattern -> value, for all 65536 patterns
    const t = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
      t[h] = e === 0 ? s * f * Math.pow(2, -24) : e === 31 ? (f ? NaN : s * Infinity) : s * (1 + f / 1024) * Math.pow(2, e - 15);
    }
    return t;
  })();

  function bytesOf(b64) {
    const bin = atob(b64), out = new Uint8Array(bin.length);
    for (let k = 0; k < bin.length; k++) out[k] = bin.charCodeAt(k);
    return out;
  }

  function decode(b64, dtype) {  // -> Float32Array of the map's values
    const bytes = bytesOf(b64);
    if (dtype === "float16") {
      const bits = new Uint16Array(bytes.buffer), out = new Float32Array(bits.length);
      for (let k = 0; k < bits.length; k++) out[k] = HALF[bits[k]];
      return out;
    }
    const out = new Float32Array(bytes.length);
    for (let k = 0; k < bytes.length; k++) out[k] = bytes[k] / 255;
    return out;
  }

  const cache = new Map();
  function maps(r, s) {  // {att, attr|null, n} of run r, segment s (decoded once)
    const key = r + ":" + s;
    if (!cache.has(key)) {
      const run = DATA.runs[r], seg = run.segments[s];
      const attr = seg.attribution ? decode(seg.attribution, run.dtype) : null;
      cache.set(key, { att: decode(seg.attention, run.dtype), attr: attr, n: seg.tokens.length });
      if (cache.size > 6) cache.delete(cache.keys().next().value);
    }
    return cache.get(key);
  }

  function headMap(values, n, layer, head, H) {  // the (n, n) slice of one head, row-major
    const size = n * n, start = (layer * H + head) * size;
    return values.subarray(start, start + size);
  }

  function currentMaps(head) {  // {A, a|null, d|null, n} for the current layer and the given head
    const run = DATA.runs[state.run], m = maps(state.run, state.seg), n = m.n;
    const A = headMap(m.att, n, state.layer, head, run.heads);
    let a = null, d = null;
    if (m.attr) {
      a = headMap(m.attr, n, state.layer, head, run.heads);
      d = new Float32Array(n * n);
      for (let k = 0; k < d.length; k++) d[k] = a[k] - A[k];
    }
    return { A: A, a: a, d: d, n: n };
  }

  // ------------------------------------------------------------------ colours
  const RAMP = [[255, 255, 255], [254, 224, 144], [253, 141, 60], [215, 48, 39], [103, 0, 31]];
  function seqColour(t) {  // t in [0, 1]: white (0) - yellow - orange - red - dark red (1)
    t = Math.max(0, Math.min(1, Number.isFinite(t) ? t : 0));
    const x = t * (RAMP.length - 1), k = Math.min(RAMP.length - 2, Math.floor(x)), f = x - k;
    return RAMP[k].map((v, q) => Math.round(v + f * (RAMP[k + 1][q] - v)));
  }
  function divColour(t) {  // t in [-1, 1]: blue - white - red
    t = Math.max(-1, Math.min(1, t));
    const w = Math.round(255 * (1 - Math.abs(t)));
    return t >= 0 ? [255, w, w] : [w, w, 255];
  }
  function colourOf(v, scale, diverging) {
    if (diverging) return divColour(Math.sign(v) * Math.pow(Math.abs(v) / scale, state.gamma));
    return seqColour(Math.pow(v / scale, state.gamma));
  }
  function maxOf(arrays, abs) {
    let m = 0;
    for (const x of arrays) if (x) for (let k = 0; k < x.length; k++) m = Math.max(m, abs ? Math.abs(x[k]) : x[k]);
    return m > 0 ? m : 1;
  }

  // ------------------------------------------------------------------ formatting
  const fmt = (v) => (v === null || v === undefined || Number.isNaN(v) ? "-" : Number(v).toPrecision(4));
  function cell(tag, text, cls, value) {
    const el = document.createElement(tag);
    el.textContent = text;
    if (cls) el.className = cls;
    if (value !== undefined && value !== null) el.dataset.v = String(value);
    return el;
  }
  function tokenText(run, s, i) { return DATA.runs[run].segments[s].tokens[i]; }

  // ------------------------------------------------------------------ heatmaps
  function drawBase(canvas, values, n, scale, diverging) {
    canvas.width = n; canvas.height = n;
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(n, n);
    for (let k = 0; k < n * n; k++) {
      const c = colourOf(values[k], scale, diverging);
      img.data[4 * k] = c[0]; img.data[4 * k + 1] = c[1]; img.data[4 * k + 2] = c[2]; img.data[4 * k + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  function cellSize(n) { return Math.max(3, Math.min(14, Math.floor(360 / n))); }

  function tokenSpan(i, text, px, which) {
    const el = cell("span", text, "tok");
    el.dataset.i = i;
    el.dataset.which = which;
    el.style.fontSize = Math.min(11, px - 1) + "px";
    el.style.lineHeight = px + "px";
    if (which === "row") el.style.height = px + "px"; else el.style.width = px + "px";
    if (px < 7) el.style.visibility = "hidden";
    el.addEventListener("mouseenter", () => setHover({ i: i, j: null, side: which }));
    el.addEventListener("click", () => pin({ i: i, j: null, side: which }));
    return el;
  }

  function heatmap(box, values, n, scale, diverging, name) {
    const px = cellSize(n), tokens = DATA.runs[state.run].segments[state.seg].tokens;
    const grid = document.createElement("div");
    grid.className = "heat";
    const corner = document.createElement("div"), cols = document.createElement("div");
    cols.className = "collabels";
    tokens.forEach((t, j) => cols.appendChild(tokenSpan(j, t, px, "col")));
    const rows = document.createElement("div");
    rows.className = "rowlabels";
    tokens.forEach((t, i) => rows.appendChild(tokenSpan(i, t, px, "row")));
    const wrap = document.createElement("div");
    wrap.className = "mapwrap";
    const base = document.createElement("canvas"), over = document.createElement("canvas");
    base.id = "heat-" + name;
    drawBase(base, values, n, scale, diverging);
    base.style.width = base.style.height = n * px + "px";
    over.className = "overlay";
    over.width = over.height = n * px;
    over.addEventListener("mousemove", (e) => {
      const r = over.getBoundingClientRect();
      const j = Math.floor((e.clientX - r.left) / px), i = Math.floor((e.clientY - r.top) / px);
      if (i >= 0 && i < n && j >= 0 && j < n) setHover({ i: i, j: j });
    });
    over.addEventListener("click", () => pin(state.hover));
    wrap.append(base, over);
    grid.append(corner, cols, rows, wrap);
    box.appendChild(grid);
    box.appendChild(cell("div", (diverging ? "colour: -" + fmt(scale) + " (blue) to +" : "colour: 0 (white) to ") +
                         fmt(scale) + (state.gamma !== 1 ? ", square-root scale" : ""), "legend"));
    return { kind: "heat", over: over, px: px, n: n, labels: grid };
  }

  // ------------------------------------------------------------------ bertviz-style token lines
  function lines(box, values, n, scale, diverging, name) {
    const tokens = DATA.runs[state.run].segments[state.seg].tokens, rowPx = 15, width = 150;
    const wrap = document.createElement("div");
    wrap.className = "lines";
    const left = document.createElement("div"), right = document.createElement("div");
    left.className = "col left"; right.className = "col right";
    const mk = (i, which) => {
      const el = tokenSpan(i, tokens[i], rowPx, which);
      el.style.visibility = "visible";
      el.style.height = rowPx + "px"; el.style.width = "";
      return el;
    };
    tokens.forEach((t, i) => { left.appendChild(mk(i, "row")); right.appendChild(mk(i, "col")); });
    const canvas = document.createElement("canvas");
    canvas.id = "lines-" + name;
    canvas.width = width; canvas.height = n * rowPx;
    wrap.append(left, canvas, right);
    box.appendChild(wrap);
    box.appendChild(cell("div", "line opacity: |value| / " + fmt(scale) + "; hover a token to isolate its lines", "legend"));
    const view = { kind: "lines", canvas: canvas, n: n, rowPx: rowPx, values: values, scale: scale,
                   diverging: diverging, labels: wrap };
    drawLines(view, null);
    return view;
  }

  function drawLines(view, focus) {
    const ctx = view.canvas.getContext("2d"), n = view.n, h = view.rowPx, w = view.canvas.width;
    ctx.clearRect(0, 0, w, view.canvas.height);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      const v = view.values[i * n + j];
      if (focus && !(focus.side === "col" ? j === focus.i : i === focus.i)) continue;
      const alpha = Math.pow(Math.min(1, Math.abs(v) / view.scale), state.gamma);
      if (alpha < 0.02) continue;
      const c = view.diverging ? (v >= 0 ? "200,30,30" : "30,30,200") : "40,80,180";
      ctx.strokeStyle = "rgba(" + c + "," + alpha.toFixed(3) + ")";
      ctx.lineWidth = focus ? 2 : 1.2;
      ctx.beginPath(); ctx.moveTo(0, i * h + h / 2); ctx.lineTo(w, j * h + h / 2); ctx.stroke();
    }
  }

  // ------------------------------------------------------------------ hover and highlight
  let views = [];
  function setHover(h) { if (!state.pinned) { state.hover = h; showHover(); } }
  function pin(h) {
    if (!h) return;
    const same = state.pinned && state.pinned.i === h.i && state.pinned.j === h.j;
    state.pinned = same ? null : h;
    state.hover = h;
    showHover();
  }

  function showHover() {
    const h = state.hover;
    for (const v of views) {
      v.labels.querySelectorAll(".tok").forEach((el) => {
        const i = Number(el.dataset.i);
        el.classList.toggle("hl", !!h && (i === h.i || (h.j !== null && i === h.j)));
      });
      if (v.kind === "heat") {
        const ctx = v.over.getContext("2d"), px = v.px, n = v.n;
        ctx.clearRect(0, 0, v.over.width, v.over.height);
        if (!h) continue;
        ctx.lineWidth = 1.5;
        ctx.strokeStyle = "rgba(0,140,255,0.95)";
        ctx.strokeRect(0.75, h.i * px + 0.75, n * px - 1.5, px - 1.5);                 // row i
        ctx.strokeStyle = "rgba(0,200,120,0.95)";
        const col = h.j === null ? h.i : h.j;
        ctx.strokeRect(col * px + 0.75, 0.75, px - 1.5, n * px - 1.5);                 // column
      } else {
        drawLines(v, h && h.j === null ? h : null);
      }
    }
    showValues();
  }

  function showValues() {
    const h = state.hover, info = $("hover-info"), table = $("token-values");
    table.textContent = "";
    if (!h) { info.textContent = "Hover a token or a cell; click to pin it."; return; }
    const m = currentMaps(state.head === "all" ? 0 : state.head), n = m.n, i = h.i;
    const tok = (k) => tokenText(state.run, state.seg, k);
    info.textContent = "";
    const headLabel = "layer " + state.layer + ", head " + (state.head === "all" ? 0 : state.head);
    if (h.j !== null) {
      const k = i * n + h.j;
      info.append("Query " + i + " \u201c" + tok(i) + "\u201d \u2192 key " + h.j + " \u201c" + tok(h.j) + "\u201d (" + headLabel + "): A = ");
      info.appendChild(cell("span", fmt(m.A[k]), "", m.A[k])).id = "hv-att";
      if (m.a) {
        info.append(", a = ");
        info.appendChild(cell("span", fmt(m.a[k]), "", m.a[k])).id = "hv-attr";
        info.append(", a \u2212 A = ");
        info.appendChild(cell("span", fmt(m.d[k]), "", m.d[k])).id = "hv-diff";
      }
    } else {
      info.append("Token " + i + " \u201c" + tok(i) + "\u201d (" + headLabel + "): its row (what it attends to and draws from) " +
                  "and its column (who attends to it and draws from it)" + (state.pinned ? " [pinned: click again to release]" : ""));
    }
    info.id = "hover-info";
    info.dataset.i = i;
    const head = ["key j", "token", "A[i,j]"].concat(m.a ? ["a[i,j]", "a\u2212A [i,j]"] : [])
      .concat(["A[j,i]"]).concat(m.a ? ["a[j,i]"] : []);
    const tr = document.createElement("tr");
    head.forEach((t, q) => tr.appendChild(cell("th", t, q === 1 ? "l" : "")));
    table.appendChild(tr);
    for (let j = 0; j < n; j++) {
      const row = document.createElement("tr");
      row.dataset.j = j;
      if (h.j === j) row.className = "hl";
      row.appendChild(cell("td", String(j)));
      row.appendChild(cell("td", tok(j), "l"));
      const vals = [["att-row", m.A[i * n + j]]];
      if (m.a) vals.push(["attr-row", m.a[i * n + j]], ["diff-row", m.d[i * n + j]]);
      vals.push(["att-col", m.A[j * n + i]]);
      if (m.a) vals.push(["attr-col", m.a[j * n + i]]);
      for (const [name, v] of vals) { const c = cell("td", fmt(v), name, v); row.appendChild(c); }
      table.appendChild(row);
    }
  }

  // ------------------------------------------------------------------ rendering
  function panelBox(id) {
    const box = $(id).querySelector(".mapbox");
    box.textContent = "";
    return box;
  }

  function renderSingle() {
    const m = currentMaps(state.head), draw = state.view === "lines" ? lines : heatmap;
    const scale = maxOf([m.A, m.a], false);
    views = [draw(panelBox("panel-attention"), m.A, m.n, scale, false, "attention")];
    $("panel-attribution").style.display = m.a ? "" : "none";
    $("panel-difference").style.display = m.a && state.diff ? "" : "none";
    if (m.a) views.push(draw(panelBox("panel-attribution"), m.a, m.n, scale, false, "attribution"));
    if (m.a && state.diff) views.push(draw(panelBox("panel-difference"), m.d, m.n, maxOf([m.d], true), true, "difference"));
  }

  function renderMultiples() {
    const run = DATA.runs[state.run], box = $("multiples"), seg = run.segments[state.seg];
    box.textContent = "";
    const js = seg.stats["discrepancy/js"];
    for (let h = 0; h < run.heads; h++) {
      const m = currentMaps(h), scale = maxOf([m.A, m.a], false), size = Math.max(60, Math.min(140, 3 * m.n));
      const div = document.createElement("div");
      div.className = "mini";
      div.id = "mini-" + h;
      div.appendChild(cell("div", "head " + h + (js ? ", JS " + fmt(js[state.layer][h]) : "")));
      const parts = [[m.A, false, scale]];
      if (m.a) parts.push([m.a, false, scale]);
      if (m.a && state.diff) parts.push([m.d, true, maxOf([m.d], true)]);
      for (const [vals, div_, sc] of parts) {
        const c = document.createElement("canvas");
        drawBase(c, vals, m.n, sc, div_);
        c.style.width = c.style.height = size + "px";
        div.appendChild(c);
      }
      div.title = "attention | attribution" + (state.diff ? " | difference" : "") + ": click to open this head";
      div.addEventListener("click", () => { state.head = h; $("head").value = String(h); render(); });
      box.appendChild(div);
    }
  }

  function statRows(run) {
    const rows = [["discrepancy/js", "JS divergence (bits)"], ["discrepancy/tv", "total variation"],
                  ["discrepancy/top1", "top-1 agreement"], ["discrepancy/spearman", "Spearman"],
                  ["attention/entropy", "attention entropy (bits)"], ["attribution/entropy", "attribution entropy (bits)"],
                  ["attribution/self", "attribution self a_ii"], ["attribution/self_top1", "attribution self top-1"]];
    for (const p of run.patterns) {
      rows.push(["attention/patterns/" + p, "attention mass: " + p], ["attribution/patterns/" + p, "attribution mass: " + p],
                ["uniform/patterns/" + p, "uniform baseline: " + p]);
    }
    return rows.filter((r) => r[0] in run.corpus);
  }

  function renderStats() {
    const run = DATA.runs[state.run], seg = run.segments[state.seg], table = $("head-stats");
    const head = state.head === "all" ? null : state.head;
    $("stats-title").textContent = "Head statistics: layer " + state.layer + (head === null ? " (all heads)" : ", head " + head);
    table.textContent = "";
    const tr = document.createElement("tr");
    tr.appendChild(cell("th", "statistic", "l"));
    const heads = head === null ? [...Array(run.heads).keys()] : [head];
    for (const h of heads) {
      tr.appendChild(cell("th", (head === null ? "h" + h + " " : "") + "segment " + seg.index));
      tr.appendChild(cell("th", (head === null ? "h" + h + " " : "") + "corpus"));
    }
    table.appendChild(tr);
    for (const [name, label] of statRows(run)) {
      const row = document.createElement("tr");
      row.dataset.stat = name;
      row.appendChild(cell("td", label, "l"));
      for (const h of heads) {
        const s = seg.stats[name] ? seg.stats[name][state.layer][h] : null, c = run.corpus[name][state.layer][h];
        row.appendChild(cell("td", fmt(s), "seg", s));
        row.appendChild(cell("td", fmt(c), "corpus", c));
      }
      table.appendChild(row);
    }
  }

  function renderCorpus() {
    const run = DATA.runs[state.run], seg = run.segments[state.seg];
    const tables = state.scope === "segment" ? seg.stats : run.corpus, t = tables[state.metric];
    const canvas = $("corpus-map"), L = run.layers, H = run.heads, px = 34, top = 16, left = 26;
    canvas.width = left + H * px; canvas.height = top + L * px;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = "10px sans-serif"; ctx.fillStyle = "#333"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (let h = 0; h < H; h++) ctx.fillText("h" + h, left + h * px + px / 2, top / 2);
    for (let l = 0; l < L; l++) ctx.fillText("L" + l, left / 2, top + l * px + px / 2);
    if (!t) { $("corpus-info").textContent = "not available for this run or segment"; return; }
    const flat = t.flat().filter((v) => v !== null), lo = Math.min(0, ...flat), hi = Math.max(...flat, 1e-12);
    for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) {
      const v = t[l][h], c = v === null ? [220, 220, 220] : seqColour((v - lo) / (hi - lo || 1));
      ctx.fillStyle = "rgb(" + c.join(",") + ")";
      ctx.fillRect(left + h * px, top + l * px, px - 1, px - 1);
      ctx.fillStyle = c[0] * 0.3 + c[1] * 0.6 + c[2] * 0.1 > 140 ? "#000" : "#fff";
      ctx.fillText(v === null ? "-" : (Math.abs(v) >= 0.01 || v === 0 ? v.toFixed(2) : v.toExponential(0)), left + h * px + px / 2, top + l * px + px / 2);
    }
    if (state.head !== "all") {
      ctx.strokeStyle = "#e00"; ctx.lineWidth = 2;
      ctx.strokeRect(left + state.head * px + 1, top + state.layer * px + 1, px - 3, px - 3);
    }
    canvas.onclick = (e) => {
      const r = canvas.getBoundingClientRect();
      const h = Math.floor((e.clientX - r.left - left) / px), l = Math.floor((e.clientY - r.top - top) / px);
      if (l < 0 || l >= L || h < 0 || h >= H) return;
      state.layer = l; state.head = h;
      $("layer").value = String(l); $("head").value = String(h);
      render();
      $("corpus-info").textContent = "opened layer " + l + ", head " + h + ": " + state.metric + " = " + fmt(t[l][h]);
    };
    canvas.onmousemove = (e) => {
      const r = canvas.getBoundingClientRect();
      const h = Math.floor((e.clientX - r.left - left) / px), l = Math.floor((e.clientY - r.top - top) / px);
      if (l >= 0 && l < L && h >= 0 && h < H) $("corpus-info").textContent = state.metric + " at layer " + l + ", head " + h + ": " + fmt(t[l][h]);
    };
    $("corpus-info").textContent = state.metric + " (" + (state.scope === "segment" ? "segment " + seg.index : "corpus") +
      "): " + fmt(lo) + " (white) to " + fmt(hi) + " (dark red)";
  }

  function render() {
    const single = state.head !== "all";
    $("single").style.display = single ? "" : "none";
    $("multiples").style.display = single ? "none" : "";
    views = [];
    if (single) renderSingle(); else renderMultiples();
    state.hover = state.pinned && single ? state.pinned : null;
    if (!single) state.pinned = null;
    showHover();
    renderStats();
    renderCorpus();
  }

  // ------------------------------------------------------------------ controls
  function options(select, items, value) {
    select.textContent = "";
    for (const [v, label] of items) { const o = document.createElement("option"); o.value = String(v); o.textContent = label; select.appendChild(o); }
    select.value = String(value);
  }

  function segmentLabel(seg) {
    let text = "";
    for (const t of seg.tokens) {
      if (/^\[.*\]$|^<.*>$/.test(t)) continue;
      text += t.startsWith("##") ? t.slice(2) : (text ? " " : "") + t;
    }
    return "#" + seg.index + " (" + seg.tokens.length + " tokens): " + (text.length > 70 ? text.slice(0, 70) + "\u2026" : text);
  }

  function setupRun() {
    const run = DATA.runs[state.run];
    state.layer = Math.min(state.layer, run.layers - 1);
    if (state.head !== "all") state.head = Math.min(state.head, run.heads - 1);
    state.seg = Math.min(state.seg, run.segments.length - 1);
    state.pinned = null;
    $("title").textContent = "bertstory viewer: " + run.title;
    options($("segment"), run.segments.map((s, k) => [k, segmentLabel(s)]), state.seg);
    options($("layer"), [...Array(run.layers).keys()].map((l) => [l, String(l)]), state.layer);
    options($("head"), [...Array(run.heads).keys()].map((h) => [h, String(h)]).concat([["all", "all heads"]]), state.head);
    const names = Object.keys(run.corpus);
    const first = ["discrepancy/js", "discrepancy/tv", "discrepancy/top1", "discrepancy/spearman"].filter((n) => names.includes(n));
    const rest = names.filter((n) => !first.includes(n));
    options($("corpus-metric"), first.concat(rest).map((n) => [n, n]), names.includes(state.metric) ? state.metric : first.concat(rest)[0]);
    state.metric = $("corpus-metric").value;
    $("diff").disabled = !run.has_attribution;
    $("note").textContent = run.segments_saved + " of " + run.segments_total + " segments have saved maps; " + run.segments.length +
      " are on this page. Maps stored as " + run.dtype + " (absolute error \u2264 " + run.max_error.toPrecision(3) + "); " +
      (run.has_attribution ? "rows of A and a sum to 1 over the keys." : "this run has no attribution (attribution=none): attention only.") +
      " Run directory: " + run.run_dir;
  }

  function init() {
    if (DATA.runs.length > 1) options($("run"), DATA.runs.map((r, k) => [k, r.label + " (" + r.run_dir + ")"]), 0);
    else $("run-label").style.display = "none";
    $("run").addEventListener("change", (e) => { state.run = Number(e.target.value); setupRun(); render(); });
    $("segment").addEventListener("change", (e) => { state.seg = Number(e.target.value); state.pinned = null; render(); });
    $("layer").addEventListener("change", (e) => { state.layer = Number(e.target.value); render(); });
    $("head").addEventListener("change", (e) => { state.head = e.target.value === "all" ? "all" : Number(e.target.value); render(); });
    $("view").addEventListener("change", (e) => { state.view = e.target.value; render(); });
    $("gamma").addEventListener("change", (e) => { state.gamma = Number(e.target.value); render(); });
    $("diff").addEventListener("change", (e) => { state.diff = e.target.checked; render(); });
    $("corpus-metric").addEventListener("change", (e) => { state.metric = e.target.value; renderCorpus(); });
    $("corpus-scope").addEventListener("change", (e) => { state.scope = e.target.value; renderCorpus(); });
    setupRun();
    render();
  }
  init();
})();
