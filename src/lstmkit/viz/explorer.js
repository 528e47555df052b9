// lstmkit gate explorer: reads the JSON in #lk-data (see lstmkit/viz/explorer.py) and draws
// the input heatmap, the six-quantity strip, the unit browser, trajectories and memory spans.
// Plain JavaScript, no libraries, no network (except POST api/states when served live).
(function () {
  "use strict";

  var GUTTER = 26;          // px left of the aligned canvases, for row labels
  var STRIP_ROW = 15;       // px per quantity row in the strip
  var MAX_COLUMNS = 30000;  // canvas width limit (browsers cap canvases near 32k px)
  var TRAJ_COLORS = ["#e4572e", "#17a398", "#f3a712", "#8e44ad", "#2e86de"];
  var EXAMPLES_TEXT = [
    ["\"[^\"\\n]*\"", "inside double quotes"],
    ["\\([^)\\n]*\\)", "inside parentheses"],
    ["^.{0,9}", "first 10 characters of a line"],
    ["\\b[A-Z]{2,}\\b", "upper-case words"],
    ["[aeiouAEIOU]", "vowels"],
    ["\\s", "white space"]
  ];

  var data = null, T = 0, chars = [], cache = {}, spans = [];
  var state = { layer: 0, direction: 0, quantity: "c", unit: 0, rankQuantity: "c", signal: "regex",
                pattern: "", sort: "rank", order: [], scores: null, signalValues: null, hover: -1 };
  var $ = function (id) { return document.getElementById(id); };

  // ---------------------------------------------------------------- data
  function decode(entry) {
    var bin = atob(entry.data), n = bin.length, bytes = new Uint8Array(n);
    for (var k = 0; k < n; k++) bytes[k] = bin.charCodeAt(k);
    var q = entry.bits === 16 ? new Uint16Array(bytes.buffer) : bytes;
    var top = entry.bits === 16 ? 65535 : 255, step = (entry.hi - entry.lo) / top, out = new Float32Array(q.length);
    for (var k2 = 0; k2 < q.length; k2++) out[k2] = entry.lo + q[k2] * step;
    return { values: out, units: q.length / T, step: step };
  }

  function arr(q, layer, dir) {        // {values: Float32Array (T*U, row-major), units: U}
    var key = q + "/" + layer + "/" + dir;
    if (!cache[key]) cache[key] = decode(data.arrays[q][layer][dir]);
    return cache[key];
  }

  function unitValues(q, layer, dir, u) {  // Float32Array (T,)
    var a = arr(q, layer, dir), out = new Float32Array(T), U = a.units;
    if (u >= U) return out;
    for (var t = 0; t < T; t++) out[t] = a.values[t * U + u];
    return out;
  }

  // ---------------------------------------------------------------- colours
  function scaleFor(q, values) {  // [lo, hi] the colours span, and whether it is diverging
    if (q === "i" || q === "f" || q === "o") return { lo: 0, hi: 1, div: false };
    // z and sLSTM's h = o·c/n (c/n is a weighted mean of tanh values) are in [-1, 1] as g and the LSTM's h
    if (q === "g" || q === "z" || (q === "h" && data.model.proj === data.model.hidden && data.model.cell !== "mlstm"))
      return { lo: -1, hi: 1, div: true };
    var m = 1e-6;
    for (var t = 0; t < values.length; t++) m = Math.max(m, Math.abs(values[t]));
    return { lo: -m, hi: m, div: true };
  }

  function rgb(v, s) {  // [r, g, b]
    var x;
    if (!s.div) {
      x = Math.max(0, Math.min(1, (v - s.lo) / (s.hi - s.lo)));
      return [Math.round(255 - x * (255 - 37)), Math.round(255 - x * (255 - 99)), Math.round(255 - x * (255 - 181))];
    }
    x = Math.max(-1, Math.min(1, v / s.hi));
    if (x >= 0) return [Math.round(255 - x * (255 - 200)), Math.round(255 - x * (255 - 48)), Math.round(255 - x * (255 - 48))];
    x = -x;
    return [Math.round(255 - x * (255 - 40)), Math.round(255 - x * (255 - 110)), Math.round(255 - x * (255 - 200))];
  }

  function css(c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }

  function fmt(v) {
    if (!isFinite(v)) return String(v);
    var a = Math.abs(v);
    return a !== 0 && (a < 0.001 || a >= 10000) ? v.toExponential(2) : v.toFixed(3);
  }

  function spanText(v) { return v >= data.span_cap ? "\u2265" + T : (v >= 100 ? v.toFixed(0) : v.toFixed(1)); }

  // ---------------------------------------------------------------- set-up
  function fillSelect(sel, items, value) {
    sel.innerHTML = "";
    items.forEach(function (it) {
      var o = document.createElement("option");
      o.value = it[0]; o.textContent = it[1];
      sel.appendChild(o);
    });
    sel.value = String(value);
  }

  function init(payload, keep) {
    data = payload; T = data.steps; cache = {};
    if (!keep) {
      var d = data.defaults;
      state.layer = d.layer; state.direction = d.direction; state.quantity = d.quantity; state.unit = d.unit;
      state.rankQuantity = d.rank_quantity; state.pattern = d.pattern || "";
      state.signal = data.kind === "text" ? "regex" : "value";
    }
    state.layer = Math.min(state.layer, data.model.layers - 1);
    state.direction = Math.min(state.direction, data.model.directions - 1);
    var m = data.model;
    $("title").textContent = data.title || "LSTM gate explorer";
    $("model-meta").textContent = m.layers + " layer" + (m.layers > 1 ? "s" : "") + " \u00d7 " + m.hidden + " units" +
      (m.directions > 1 ? ", bidirectional" : "") + (m.proj !== m.hidden ? ", h projected to " + m.proj : "") +
      (m.variants && m.variants.length ? ", " + m.variants.join(", ") : "") + " \u00b7 " + T + " steps";
    var layers = [], dirs = [["0", "forward"]], qs = [];
    for (var l = 0; l < m.layers; l++) layers.push([String(l), String(l + 1) + " of " + m.layers]);
    if (m.directions > 1) dirs.push(["1", "reverse"]);
    data.quantities.forEach(function (q) { qs.push([q, q + " \u2014 " + data.names[q]]); });
    fillSelect($("layer"), layers, state.layer);
    fillSelect($("direction"), dirs, state.direction);
    $("direction").disabled = m.directions < 2;
    fillSelect($("quantity"), qs, state.quantity);
    fillSelect($("rank-quantity"), qs, state.rankQuantity);
    fillSelect($("signal"), data.kind === "text"
      ? [["regex", "regular expression"], ["line", "position in line"]]
      : [["value", "series value"], ["change", "series change"]], state.signal);
    $("pattern").value = state.pattern;
    if (data.kind === "text") {
      chars = Array.from(data.text);
      $("text").style.display = "";
      $("series").style.display = "none";
      $("heat").style.display = "none";
      $("input-title").textContent = "input text, coloured by the chosen unit";
      $("pattern").style.display = "";
      buildText();
      buildExamples();
    } else {
      chars = data.labels;
      $("text").style.display = "none";
      $("series").style.display = "";
      $("heat").style.display = "";
      $("input-title").textContent = "series, with the gates aligned below it";
      $("examples").innerHTML = "";
      $("pattern").style.display = "none";  // a series is ranked against its values, not a regex
    }
    $("live").style.display = data.live ? "block" : "none";
    if (data.live && data.kind === "text" && !keep) $("live-text").value = data.text;
    clampUnit();
    updateSignal();
    renderAll();
  }

  function buildText() {
    var box = $("text"), frag = document.createDocumentFragment();
    box.innerHTML = "";
    spans = new Array(T);
    for (var t = 0; t < T; t++) {
      var s = document.createElement("span"), ch = chars[t];
      s.dataset.t = String(t);
      if (ch === "\n") { s.className = "nl"; s.textContent = "\u21b5\n"; }
      else if (ch === "\t") { s.textContent = "\u21e5   "; }
      else s.textContent = ch;
      spans[t] = s;
      frag.appendChild(s);
    }
    box.appendChild(frag);
  }

  function buildExamples() {
    var box = $("examples");
    box.innerHTML = "";
    EXAMPLES_TEXT.forEach(function (ex) {
      var b = document.createElement("button");
      b.textContent = ex[0]; b.title = ex[1];
      b.addEventListener("click", function () {
        state.signal = "regex"; $("signal").value = "regex";
        state.pattern = ex[0]; $("pattern").value = ex[0];
        updateSignal(); renderAll();
      });
      box.appendChild(b);
    });
  }

  function unitsOf(q) { return arr(q, state.layer, state.direction).units; }

  function clampUnit() {
    var U = unitsOf(state.quantity);
    state.unit = Math.max(0, Math.min(U - 1, state.unit | 0));
    $("unit").max = String(U - 1);
    $("unit").value = String(state.unit);
  }

  // ---------------------------------------------------------------- hypothesis and ranking
  function regexMask(pattern) {  // Float64Array (T,) of 0/1, or throws SyntaxError
    var rx = new RegExp(pattern, "gm"), text = data.text, mask = new Float64Array(T);
    // JavaScript indexes strings in UTF-16 code units; steps are code points (as in Python)
    var cp = new Int32Array(text.length + 1), k = 0;
    for (var j = 0; j < text.length; j++) {
      cp[j] = k;
      var c = text.charCodeAt(j);
      if (!(c >= 0xd800 && c <= 0xdbff && j + 1 < text.length)) k++;
    }
    cp[text.length] = k;
    var m, matches = 0;
    while ((m = rx.exec(text)) !== null) {
      if (m[0].length === 0) { rx.lastIndex++; continue; }
      matches++;
      for (var t = cp[m.index]; t < cp[m.index + m[0].length]; t++) mask[t] = 1;
    }
    mask.matches = matches;
    return mask;
  }

  function lineSignal() {
    var s = new Float64Array(T), col = 0;
    for (var t = 0; t < T; t++) { s[t] = col; col = chars[t] === "\n" ? 0 : col + 1; }
    return s;
  }

  function seriesSignal(change) {
    var s = new Float64Array(T), y = data.series;
    for (var t = 0; t < T; t++) s[t] = change ? (t ? y[t] - y[t - 1] : 0) : y[t];
    return s;
  }

  // Pearson r between the signal (T,) and every unit of a (T, U) array; 0 where either is flat.
  // The same score as lstmkit.viz.patterns.pearson_scores.
  function pearsonScores(signal, a) {
    var U = a.units, v = a.values, r = new Float64Array(U), ms = 0, t, u;
    for (t = 0; t < T; t++) ms += signal[t];
    ms /= T;
    var mean = new Float64Array(U);
    for (t = 0; t < T; t++) for (u = 0; u < U; u++) mean[u] += v[t * U + u];
    for (u = 0; u < U; u++) mean[u] /= T;
    var num = new Float64Array(U), sa = new Float64Array(U), ss = 0, big = 1;
    for (t = 0; t < T; t++) {
      var ds = signal[t] - ms, row = t * U;
      ss += ds * ds;
      for (u = 0; u < U; u++) {
        var da = v[row + u] - mean[u];
        num[u] += ds * da; sa[u] += da * da;
        if (Math.abs(v[row + u]) > big) big = Math.abs(v[row + u]);
      }
    }
    for (u = 0; u < U; u++) {
      var den = Math.sqrt(ss * sa[u]);
      r[u] = den > 1e-12 * big ? num[u] / den : 0;
    }
    return r;
  }

  function updateSignal() {
    var msg = $("pattern-msg"), input = $("pattern");
    msg.className = ""; input.className = "";
    input.disabled = state.signal !== "regex";
    state.signalValues = null;
    try {
      if (state.signal === "regex") {
        if (!state.pattern) { msg.textContent = "type a regular expression to rank the units (JavaScript syntax, multiline)"; }
        else {
          var mask = regexMask(state.pattern), n = 0;
          for (var t = 0; t < T; t++) n += mask[t];
          if (n === 0 || n === T) {
            msg.textContent = "the pattern matches " + (n === 0 ? "no character" : "every character") + " \u2014 nothing to rank by";
            msg.className = "bad";
          } else {
            state.signalValues = mask;
            msg.textContent = mask.matches + " match" + (mask.matches === 1 ? "" : "es") + ", " + n + " of " + T +
              " characters (" + (100 * n / T).toFixed(1) + " %)";
          }
        }
      } else if (state.signal === "line") {
        state.signalValues = lineSignal();
        msg.textContent = "signal: each character's column in its line";
      } else {
        state.signalValues = seriesSignal(state.signal === "change");
        msg.textContent = "signal: the series " + (state.signal === "change" ? "change from the step before" : "value");
      }
    } catch (e) {
      msg.textContent = "not a regular expression: " + e.message;
      msg.className = "bad"; input.className = "bad";
    }
    rank();
  }

  function rank() {
    var a = arr(state.rankQuantity, state.layer, state.direction), U = a.units, idx = [];
    for (var u = 0; u < U; u++) idx.push(u);
    state.scores = state.signalValues ? pearsonScores(state.signalValues, a) : null;
    var r = state.scores;
    if (r) idx.sort(function (x, y) { return Math.abs(r[y]) - Math.abs(r[x]) || x - y; });
    state.order = idx;
  }

  // ---------------------------------------------------------------- drawing
  var timings = {};  // ms of each view's last redraw (benchmarks/explorer_page.py reads them)
  function timed(name, fn) {
    var t0 = performance.now();
    fn();
    timings[name] = performance.now() - t0;
  }

  function renderViews() {
    timed("text", renderText); timed("aligned", renderAligned); timed("table", renderTable);
    timed("trajectories", renderTrajectories); timed("spans", renderSpans); renderInfo();
  }

  function renderAll() {
    clampUnit();
    renderViews();
    document.body.dataset.ready = "1";
  }

  function renderInfo() {
    var s = data.span[state.layer][state.direction], f = data.fbar[state.layer][state.direction], u = state.unit;
    var parts = ["of " + unitsOf(state.quantity)];
    if (u < s.length) parts.push("span " + spanText(s[u]) + " steps", "mean f " + f[u].toFixed(3));
    if (state.scores && u < state.scores.length) parts.push("r " + state.scores[u].toFixed(3));
    $("unit-info").textContent = parts.join(" \u00b7 ");
  }

  function renderLegend(sc) {
    var c = $("legend"), g = c.getContext("2d");
    for (var x = 0; x < c.width; x++) {
      g.fillStyle = css(rgb(sc.lo + (sc.hi - sc.lo) * x / (c.width - 1), sc));
      g.fillRect(x, 0, 1, c.height);
    }
    $("legend-label").textContent = state.quantity + " (" + data.names[state.quantity] + "), unit " + state.unit;
    $("legend-range").textContent = fmt(sc.lo) + " \u2026 " + fmt(sc.hi);
  }

  function renderText() {
    var v = unitValues(state.quantity, state.layer, state.direction, state.unit), sc = scaleFor(state.quantity, v);
    renderLegend(sc);
    if (data.kind !== "text") return;
    for (var t = 0; t < T; t++) {
      var c = rgb(v[t], sc), s = spans[t];
      s.style.backgroundColor = css(c);
      s.style.color = (c[0] * 0.299 + c[1] * 0.587 + c[2] * 0.114) < 140 ? "#fff" : "";
    }
  }

  function columns() {  // {cw: px per step, n: steps drawn}
    var n = Math.min(T, MAX_COLUMNS), avail = Math.max(300, $("aligned").clientWidth - GUTTER - 4);
    var cw = Math.max(1, Math.min(12, Math.floor(avail / n)));
    if (data.kind === "text") cw = Math.max(cw, Math.min(2, Math.floor(MAX_COLUMNS / n)));
    return { cw: cw, n: n };
  }

  // Rows of per-step colour cells written straight into pixels (a fillRect per cell is ~10x slower):
  // row k covers y = top + k*rowH … + rowH - gap, step t covers x = GUTTER + t*cw … + cw.
  function paintRows(g, rows, rowH, gap, col, top) {
    top = top || 0;
    var W = GUTTER + col.n * col.cw, H = rows.length * rowH, img = g.createImageData(W, H), px = img.data;
    rows.forEach(function (row, k) {
      for (var t = 0; t < col.n; t++) {
        var c = rgb(row.get(t), row.scale);
        for (var y = k * rowH; y < (k + 1) * rowH - gap; y++) {
          var o = (y * W + GUTTER + t * col.cw) * 4;
          for (var x = 0; x < col.cw; x++, o += 4) { px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2]; px[o + 3] = 255; }
        }
      }
    });
    g.putImageData(img, 0, top);
  }

  function renderAligned() {
    var col = columns(), W = GUTTER + col.n * col.cw;
    $("strip-note").textContent = (col.n < T ? "strip shows the first " + col.n + " of " + T + " steps; " : "") +
      "strip: i, f, g, o, c, h of unit " + state.unit + " at every step (hover for values" +
      (data.kind === "series" ? "; click a row of the unit map below to choose a unit)" : ")");
    // the six quantities of the chosen unit
    var strip = $("strip"), g = strip.getContext("2d");
    strip.width = W; strip.height = STRIP_ROW * 6;
    g.clearRect(0, 0, W, strip.height);
    paintRows(g, data.quantities.map(function (q) {
      var v = unitValues(q, state.layer, state.direction, state.unit);
      return { get: function (t) { return v[t]; }, scale: scaleFor(q, v) };
    }), STRIP_ROW, 1, col);
    g.fillStyle = "#1d2330"; g.font = "12px monospace"; g.textBaseline = "middle";
    data.quantities.forEach(function (q, row) { g.fillText(q, 8, row * STRIP_ROW + STRIP_ROW / 2); });
    if (data.kind !== "series") return;
    // the series, on the same x axis
    var sv = $("series"), sg = sv.getContext("2d"), y = data.series, H = 130, lo = Infinity, hi = -Infinity, t;
    sv.width = W; sv.height = H;
    for (t = 0; t < col.n; t++) { lo = Math.min(lo, y[t]); hi = Math.max(hi, y[t]); }
    if (hi === lo) { hi += 1; lo -= 1; }
    var py = function (val) { return 8 + (H - 24) * (1 - (val - lo) / (hi - lo)); };
    sg.fillStyle = "#fff"; sg.fillRect(0, 0, W, H);
    sg.strokeStyle = "#1d2330"; sg.lineWidth = 1.5; sg.beginPath();
    for (t = 0; t < col.n; t++) {
      var x = GUTTER + (t + 0.5) * col.cw;
      if (t) sg.lineTo(x, py(y[t])); else sg.moveTo(x, py(y[t]));
    }
    sg.stroke();
    sg.fillStyle = "#667085"; sg.font = "11px sans-serif"; sg.textBaseline = "alphabetic";
    sg.fillText(fmt(hi), 2, 12); sg.fillText(fmt(lo), 2, H - 14);
    sg.fillText(String(chars[0]), GUTTER, H - 2);
    var last = String(chars[col.n - 1]);
    sg.fillText(last, Math.max(GUTTER, W - sg.measureText(last).width - 2), H - 2);
    // every unit of the chosen quantity, one row each
    var heat = $("heat"), hg = heat.getContext("2d"), a = arr(state.quantity, state.layer, state.direction), U = a.units;
    var rh = Math.max(2, Math.min(8, Math.floor(260 / U)));
    heat.width = W; heat.height = U * rh + 2;
    var m = 1e-6;
    for (var k = 0; k < a.values.length; k++) m = Math.max(m, Math.abs(a.values[k]));
    var sc = state.quantity === "c" ? { lo: -m, hi: m, div: true } : scaleFor(state.quantity, a.values), rows = [];
    for (var u = 0; u < U; u++) rows.push({ get: (function (uu) { return function (t) { return a.values[t * U + uu]; }; })(u), scale: sc });
    hg.clearRect(0, 0, W, heat.height);
    paintRows(hg, rows, rh, 0, col, 1);
    hg.strokeStyle = "#111"; hg.lineWidth = 1;
    hg.strokeRect(GUTTER - 0.5, 0.5 + state.unit * rh, col.n * col.cw + 1, rh + 1);
    hg.fillStyle = "#1d2330"; hg.font = "10px monospace"; hg.textBaseline = "top";
    hg.fillText(state.quantity, 4, 2);
  }

  function renderTable() {
    var body = $("units").tBodies[0], s = data.span[state.layer][state.direction];
    var f = data.fbar[state.layer][state.direction], r = state.scores, rankOf = {};
    state.order.forEach(function (u, k) { rankOf[u] = k + 1; });
    var rows = state.order.slice();
    if (state.sort === "unit") rows.sort(function (x, y) { return x - y; });
    else if (state.sort === "span") rows.sort(function (x, y) { return (s[y] || 0) - (s[x] || 0) || x - y; });
    else if (state.sort === "fbar") rows.sort(function (x, y) { return (f[y] || 0) - (f[x] || 0) || x - y; });
    else if (state.sort === "r" && r) rows.sort(function (x, y) { return r[y] - r[x] || x - y; });
    var html = [];
    rows.forEach(function (u) {
      var rv = r ? r[u] : null, w = rv === null ? 0 : Math.round(Math.abs(rv) * 60);
      html.push("<tr data-unit=\"" + u + "\"" + (u === state.unit ? " class=\"sel\"" : "") + "><td>" + (r ? rankOf[u] : "") +
        "</td><td>" + u + "</td><td>" + (rv === null ? "\u2013" : rv.toFixed(3) + "<span class=\"bar\" style=\"width:" + w +
        "px;background:" + (rv >= 0 ? "#c83030" : "#286ec8") + "\"></span>") + "</td><td>" +
        (u < s.length ? spanText(s[u]) : "") + "</td><td>" + (u < f.length ? f[u].toFixed(3) : "") + "</td></tr>");
    });
    body.innerHTML = html.join("");
  }

  function renderTrajectories() {
    var c = $("traj"), g = c.getContext("2d"), W = Math.max(300, $("traj-section").clientWidth - 22), H = c.height;
    c.width = W;
    var units = [state.unit];
    if (state.scores) for (var k = 0; k < state.order.length && units.length < 6; k++)
      if (state.order[k] !== state.unit && state.order[k] < data.model.hidden) units.push(state.order[k]);
    var memory = data.trajectory || "c";
    var lines = units.map(function (u) { return unitValues(memory, state.layer, state.direction, u); });
    var lo = 0, hi = 0, t;
    lines.forEach(function (v) { for (t = 0; t < T; t++) { lo = Math.min(lo, v[t]); hi = Math.max(hi, v[t]); } });
    if (hi === lo) hi = lo + 1;
    var px = function (i) { return 40 + (W - 48) * (T > 1 ? i / (T - 1) : 0.5); };
    var py = function (val) { return 6 + (H - 22) * (1 - (val - lo) / (hi - lo)); };
    g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
    if (state.signalValues && state.signal === "regex") {   // the pattern's matches, shaded
      g.fillStyle = "rgba(243, 167, 18, 0.18)";
      var dx = Math.max(1, (W - 48) / T);
      for (t = 0; t < T; t++) if (state.signalValues[t] > 0) g.fillRect(px(t) - dx / 2, 6, dx, H - 22);
    }
    g.strokeStyle = "#d9dee7"; g.beginPath(); g.moveTo(40, py(0)); g.lineTo(W - 8, py(0)); g.stroke();
    lines.slice().reverse().forEach(function (v, j) {
      var idx = lines.length - 1 - j;
      g.strokeStyle = idx === 0 ? "#1d2330" : TRAJ_COLORS[(idx - 1) % TRAJ_COLORS.length];
      g.lineWidth = idx === 0 ? 1.8 : 1; g.beginPath();
      for (t = 0; t < T; t++) { if (t) g.lineTo(px(t), py(v[t])); else g.moveTo(px(t), py(v[t])); }
      g.stroke();
    });
    g.fillStyle = "#667085"; g.font = "11px sans-serif";
    g.fillText(fmt(hi), 2, 14); g.fillText(fmt(lo), 2, H - 16); g.fillText("step 0", 40, H - 3);
    g.fillText(String(T - 1), W - 40, H - 3);
    $("traj-note").innerHTML = memory + " of unit <b>" + state.unit + "</b> (black)" + (units.length > 1 ? " and the best-ranked units: " +
      units.slice(1).map(function (u, j) { return "<span style=\"color:" + TRAJ_COLORS[j] + "\">" + u + "</span>"; }).join(", ") : "") +
      (state.signalValues && state.signal === "regex" ? "; shaded: characters the pattern matches" : "");
  }

  function renderSpans() {
    var s = data.span[state.layer][state.direction], c = $("span-hist"), g = c.getContext("2d");
    var W = c.width, H = c.height, cap = data.span_cap, top = Math.max(1, Math.ceil(Math.log2(Math.max(2, T))));
    var bins = new Array(top + 2).fill(0), binOf = function (v) {
      return v >= cap ? top + 1 : Math.max(0, Math.min(top, Math.floor(Math.log2(Math.max(1, v)))));
    };
    s.forEach(function (v) { bins[binOf(v)]++; });
    var maxc = Math.max.apply(null, bins), bw = (W - 30) / bins.length, mine = state.unit < s.length ? binOf(s[state.unit]) : -1;
    g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
    bins.forEach(function (n, b) {
      var h = maxc ? (H - 34) * n / maxc : 0;
      g.fillStyle = b === mine ? "#e4572e" : "#6d8fd8";
      g.fillRect(24 + b * bw + 1, H - 20 - h, bw - 2, h);
      g.fillStyle = "#667085"; g.font = "10px sans-serif";
      if (n) g.fillText(String(n), 24 + b * bw + 2, H - 23 - h);
      var lab = b === top + 1 ? "\u221e" : String(Math.pow(2, b));
      if (b % 2 === 0 || bins.length < 10) g.fillText(lab, 24 + b * bw + 2, H - 6);
    });
    $("span-note").textContent = "steps (log\u2082 bins; \u221e: outlives the " + T + "-step input). Unit " + state.unit +
      (state.unit < s.length ? ": " + spanText(s[state.unit]) + " steps (highlighted)." : ".");
  }

  // ---------------------------------------------------------------- interaction
  function selectUnit(u) {
    state.unit = u | 0;
    clampUnit();
    renderViews();
  }

  function showTip(ev, t) {
    var tip = $("tip");
    if (t < 0 || t >= T) { tip.style.display = "none"; return; }
    var lines = [(data.kind === "text" ? "step " + t + "  " + JSON.stringify(chars[t]) : String(chars[t]) + "  (step " + t + ")") +
                 "   unit " + state.unit];
    if (data.kind === "series") lines.push("value " + fmt(data.series[t]));
    data.quantities.forEach(function (q) {
      var a = arr(q, state.layer, state.direction);
      if (state.unit < a.units) lines.push(q + " " + fmt(a.values[t * a.units + state.unit]));
    });
    tip.textContent = lines.join("\n");
    tip.style.display = "block";
    tip.style.left = Math.min(window.innerWidth - 200, ev.clientX + 14) + "px";
    tip.style.top = (ev.clientY + 14) + "px";
    if (data.kind === "text") {
      if (state.hover >= 0 && spans[state.hover]) spans[state.hover].classList.remove("sel");
      spans[t].classList.add("sel"); state.hover = t;
    }
  }

  function stepAt(ev) {
    var col = columns(), x = ev.offsetX - GUTTER;
    return x < 0 ? -1 : Math.floor(x / col.cw);
  }

  function wire() {
    $("layer").addEventListener("change", function () { state.layer = +this.value; updateSignal(); renderAll(); });
    $("direction").addEventListener("change", function () { state.direction = +this.value; updateSignal(); renderAll(); });
    $("quantity").addEventListener("change", function () { state.quantity = this.value; renderAll(); });
    $("rank-quantity").addEventListener("change", function () { state.rankQuantity = this.value; rank(); renderAll(); });
    $("signal").addEventListener("change", function () { state.signal = this.value; updateSignal(); renderAll(); });
    $("unit").addEventListener("input", function () { if (this.value !== "") selectUnit(+this.value); });
    $("pattern").addEventListener("input", function () { state.pattern = this.value; updateSignal(); renderTable(); renderTrajectories(); renderInfo(); });
    $("units").tBodies[0].addEventListener("click", function (ev) {
      var tr = ev.target.closest("tr");
      if (tr) selectUnit(+tr.dataset.unit);
    });
    Array.prototype.forEach.call($("units").tHead.querySelectorAll("th"), function (th) {
      th.addEventListener("click", function () { state.sort = th.dataset.sort; renderTable(); });
    });
    $("text").addEventListener("mousemove", function (ev) {
      var t = ev.target.dataset ? ev.target.dataset.t : undefined;
      if (t !== undefined) showTip(ev, +t); else $("tip").style.display = "none";
    });
    $("text").addEventListener("mouseleave", function () { $("tip").style.display = "none"; });
    ["strip", "series", "heat"].forEach(function (id) {
      $(id).addEventListener("mousemove", function (ev) { showTip(ev, stepAt(ev)); });
      $(id).addEventListener("mouseleave", function () { $("tip").style.display = "none"; });
    });
    $("heat").addEventListener("click", function (ev) {
      var U = unitsOf(state.quantity), rh = Math.max(2, Math.min(8, Math.floor(260 / U)));
      selectUnit(Math.max(0, Math.min(U - 1, Math.floor((ev.offsetY - 1) / rh))));
      showTip(ev, stepAt(ev));  // the tip now speaks of the new unit
    });
    $("live-run").addEventListener("click", runLive);
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () { renderAligned(); renderTrajectories(); }, 150);
    });
  }

  function runLive() {
    var msg = $("live-msg");
    msg.textContent = "running\u2026";
    fetch("api/states", { method: "POST", headers: { "Content-Type": "application/json" },
                          body: JSON.stringify({ text: $("live-text").value }) })
      .then(function (resp) { return resp.json().then(function (j) { return { ok: resp.ok, body: j }; }); })
      .then(function (res) {
        if (!res.ok) { msg.textContent = res.body.error || "the server refused the text"; return; }
        init(res.body, true);
        msg.textContent = "ran the model on " + res.body.steps + " characters";
      })
      .catch(function (e) { msg.textContent = "no answer from the server: " + e.message; });
  }

  window.lkExplorer = {
    state: state,
    selectUnit: selectUnit,
    setPattern: function (p) {  // what typing into the pattern box does
      state.signal = "regex"; $("signal").value = "regex"; $("pattern").value = p;
      $("pattern").dispatchEvent(new Event("input"));
    },
    ranking: function () { return state.order.slice(); },
    timings: timings,
    scores: function () { return state.scores ? Array.from(state.scores) : null; },
    unitValues: function (q, layer, dir, u) { return Array.from(unitValues(q, layer, dir, u)); }
  };

  wire();
  init(JSON.parse($("lk-data").textContent), false);
})();
