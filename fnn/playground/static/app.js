// fnn Playground page: controls send the configuration to the server, which trains
// with fnn; frames come back over server-sent events and are drawn here.
"use strict";

const FEATURES = ["x1", "x2", "x1^2", "x2^2", "x1*x2", "sin(x1)", "sin(x2)"];
const $ = (id) => document.getElementById(id);
let config = null;
let frame = null;

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function call(method, path, body) {
  const post = method === "POST"; // every POST sends JSON, the only body the server takes
  const response = await fetch(path, {
    method,
    headers: post ? { "Content-Type": "application/json" } : {},
    body: post ? JSON.stringify(body || {}) : undefined,
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({ error: response.statusText }));
    showError(`${response.status}: ${problem.error}`);
    return null;
  }
  showError("");
  return response.json();
}

function readControls() {
  const number = (id) => Number($(id).value);
  return {
    ...config,
    dataset: $("dataset").value,
    noise: number("noise"),
    train_ratio: number("train_ratio"),
    batch_size: number("batch_size"),
    learning_rate: number("learning_rate"),
    activation: $("activation").value,
    optimizer: $("optimizer").value,
    regularization: $("regularization").value,
    regularization_rate: number("regularization_rate"),
    problem: $("problem").value,
    features: config.features, // set by the feature nodes of the drawing
    hidden: [...document.querySelectorAll("#neurons input")].map((input) => Number(input.value)),
    seed: config.seed,
  };
}

async function configure(next) {
  const state = await call("POST", "/api/config", next);
  if (state) apply(state);
  else writeControls(config); // the server refused: show what is really running
}

function writeControls(c) {
  for (const id of ["dataset", "noise", "train_ratio", "batch_size", "learning_rate", "activation",
                    "optimizer", "regularization", "regularization_rate", "problem"]) {
    $(id).value = c[id];
    if ($(`${id}_out`)) $(`${id}_out`).textContent = c[id];
  }
  keepingFocus($("neurons"), (neurons) => neurons.replaceChildren(...c.hidden.map((n, i) => {
    const box = document.createElement("span");
    box.className = "layer";
    const input = document.createElement("input");
    Object.assign(input, { type: "number", min: 1, max: 8, value: n, title: `neurons in layer ${i + 1}` });
    input.dataset.key = `n${i}`;
    input.addEventListener("change", () => configure(readControls()));
    const button = (text, change, label) => {
      const b = Object.assign(document.createElement("button"), { textContent: text, title: label });
      b.setAttribute("aria-label", label);
      b.dataset.key = `${text}${i}`;
      b.addEventListener("click", () => {
        const hidden = [...config.hidden];
        hidden[i] = Math.max(1, Math.min(8, hidden[i] + change));
        configure({ ...readControls(), hidden });
      });
      return b;
    };
    box.append(button("+", 1, `add a neuron to layer ${i + 1}`), input, button("\u2212", -1, `remove a neuron from layer ${i + 1}`));
    return box;
  })));
  $("layer_count").textContent = `${c.hidden.length} layer(s)`;
  markDataset(c.dataset);
}

function apply(state) {
  config = state.config;
  writeControls(config);
  // The whole configuration in the URL: a shared link starts the same run (same seed, same losses).
  history.replaceState(null, "", `#${encodeURIComponent(JSON.stringify(config))}`);
  draw(state);
}

function configFromUrl() {
  if (location.hash.length < 2) return null;
  try { return JSON.parse(decodeURIComponent(location.hash.slice(1))); } catch { return null; }
}

let lastRate = null; // [time, epoch] of the previous frame, for epochs per second
function showSpeed(epoch) {
  const now = performance.now();
  if (lastRate && epoch > lastRate[1] && now > lastRate[0]) {
    $("speed").textContent = ((epoch - lastRate[1]) / ((now - lastRate[0]) / 1000)).toFixed(0);
  }
  lastRate = [now, epoch];
}

// TensorFlow Playground's colour scale: #f59322 at -1, #e8eaeb at 0, #0877bd at 1 (fnn/playground/_engine.py's too).
const ORANGE = [245, 147, 34], MIDDLE = [232, 234, 235], BLUE = [8, 119, 189];
function colour(value) {
  const t = Math.max(-1, Math.min(1, value)), end = t >= 0 ? BLUE : ORANGE;
  const [r, g, b] = MIDDLE.map((m, k) => Math.round(m + (end[k] - m) * Math.abs(t)));
  return `rgb(${r},${g},${b})`;
}

function draw(state) {
  // Frames streamed before an answer the page has drawn are stale (a Pause already answered, say).
  if (frame && state.version < frame.version) return;
  frame = state;
  $("epoch").textContent = state.epoch;
  $("test_loss").textContent = loss(state.test_loss);
  $("train_loss").textContent = loss(state.train_loss);
  $("diverged").hidden = !state.diverged;
  $("play").innerHTML = state.playing ? "&#10074;&#10074; Pause" : "&#9654; Play";
  showSpeed(state.epoch);
  drawSurface(state);
  drawCurves(state.history);
  drawNetwork(state);
}

const loss = (value) => (value === null ? "not finite" : value.toFixed(3)); // null: NaN or infinity

function drawSurface(state) {
  const canvas = $("surface"), ctx = canvas.getContext("2d");
  const n = state.grid, cell = canvas.width / n, range = state.range;
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      const v = state.surface[row * n + col];
      ctx.fillStyle = colour($("discretize").checked && v !== null ? Math.sign(v) : v);
      ctx.fillRect(col * cell, canvas.height - (row + 1) * cell, cell + 1, cell + 1); // y grows upwards
    }
  }
  const toPixel = ([x, y]) => [(x + range) / (2 * range) * canvas.width, (range - y) / (2 * range) * canvas.height];
  const regression = state.config.problem === "regression";
  for (const part of $("show_test").checked ? ["train", "test"] : ["train"]) {
    state.points[part].forEach((point, i) => {
      const [px, py] = toPixel(point);
      const target = state.targets[part][i];
      ctx.beginPath();
      ctx.arc(px, py, 3.2, 0, 2 * Math.PI);
      ctx.fillStyle = colour(regression ? target : 2 * target - 1);
      ctx.fill();
      ctx.lineWidth = part === "test" ? 1.6 : 0.8;
      ctx.strokeStyle = part === "test" ? "#fff" : "#333";
      ctx.stroke();
    });
  }
}

function drawCurves(history) {
  const canvas = $("curves"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const all = history.train.concat(history.test).filter((v) => v !== null);
  const top = Math.max(...all, 1e-6);
  for (const [part, style] of [["train", "#999"], ["test", "#222"]]) {
    const values = history[part];
    ctx.beginPath();
    let drawing = false; // a null (diverged) epoch breaks the curve
    values.forEach((v, i) => {
      const x = values.length < 2 ? 0 : (i / (values.length - 1)) * canvas.width;
      const y = canvas.height - (v / top) * (canvas.height - 4) - 2;
      if (v !== null) drawing ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
      drawing = v !== null;
    });
    ctx.strokeStyle = style;
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }
}

function heatmap(values, n) { // a data: URL of an n x n image of values in [-1, 1], y up the rows
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = n;
  const ctx = canvas.getContext("2d");
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      const v = values[row * n + col];
      ctx.fillStyle = v === null ? "#aaa" : colour(v);
      ctx.fillRect(col, n - 1 - row, 1, 1);
    }
  }
  return canvas.toDataURL();
}

function svgNode(name, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function keepingFocus(container, rebuild) { // a redrawn part keeps the keyboard's place in it
  const active = document.activeElement;
  const key = container.contains(active) && active.dataset ? active.dataset.key : undefined;
  rebuild(container);
  const again = key && container.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (again) again.focus();
}

function onEnterOrSpace(element, action) { // what a button does with the keyboard, for SVG elements
  element.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); action(); } });
}

function drawNetwork(state) {
  // Columns: every input feature (used ones wired in), each hidden layer, the output. Each node is
  // a small heatmap of its own output over the input plane, as in TensorFlow Playground.
  const svg = $("drawing"), NODE = 28;
  const hidden = state.config.hidden;
  const sizes = [FEATURES.length, ...hidden, 1];
  const width = +svg.getAttribute("width"), height = +svg.getAttribute("height");
  const x = (layer) => 64 + (layer / (sizes.length - 1)) * (width - 104);
  const y = (layer, i) => ((i + 1) / (sizes[layer] + 1)) * height;
  const used = state.features.map((f) => FEATURES.indexOf(f)); // row i of the first weights: feature used[i]
  const row = (layer, i) => (layer === 0 ? used[i] : i);
  const parts = [];
  const largest = Math.max(1e-6, ...state.weights.flat(2).map(Math.abs));
  state.weights.forEach((w, layer) => {
    w.forEach((weights, i) => weights.forEach((value, j) => {
      const line = svgNode("line", {
        x1: x(layer) + NODE / 2, y1: y(layer, row(layer, i)), x2: x(layer + 1) - NODE / 2, y2: y(layer + 1, j),
        stroke: colour(value / largest), "stroke-width": 0.5 + 5 * Math.abs(value) / largest, class: "weight",
      });
      line.append(svgNode("title", {}, `weight ${value.toFixed(3)}`)); // shown on hover
      const where = `layer ${layer + 1}, from ${i + 1} to ${j + 1}`;
      line.setAttribute("tabindex", "0"); // the keyboard reaches every weight too
      line.dataset.key = `w${layer}-${i}-${j}`;
      line.setAttribute("role", "button");
      line.setAttribute("aria-label", `weight ${where}: ${value.toFixed(3)}`);
      const edit = async () => { // as in TensorFlow Playground: type a new value
        const typed = prompt(`weight (${where})`, value.toFixed(3));
        if (typed === null || typed.trim() === "") return;
        const s = await call("POST", "/api/weight", { layer, from: i, to: j, value: Number(typed) });
        if (s) draw(s);
      };
      line.addEventListener("click", edit);
      onEnterOrSpace(line, edit);
      parts.push(line);
    }));
  });
  const n = state.neuron_grid;
  sizes.forEach((size, layer) => {
    for (let i = 0; i < size; i++) {
      const [cx, cy] = [x(layer), y(layer, i)];
      const values = layer === 0 ? state.feature_maps[FEATURES[i]]
        : layer <= hidden.length ? state.neurons[layer - 1][i] : null;
      const group = svgNode("g", { class: "node", "data-layer": layer, "data-unit": i });
      const href = values ? heatmap(values, n) : $("surface").toDataURL();
      group.append(svgNode("image", { x: cx - NODE / 2, y: cy - NODE / 2, width: NODE, height: NODE, href }));
      group.append(svgNode("rect", { x: cx - NODE / 2, y: cy - NODE / 2, width: NODE, height: NODE,
                                     fill: "none", stroke: "#555" }));
      if (layer === 0) { // input features: click (or Enter) to use one or not
        const on = state.features.includes(FEATURES[i]);
        group.setAttribute("class", on ? "node feature on" : "node feature off");
        group.setAttribute("tabindex", "0");
        group.dataset.key = `f${FEATURES[i]}`;
        group.setAttribute("role", "switch");
        group.setAttribute("aria-checked", on);
        group.setAttribute("aria-label", `feature ${FEATURES[i]}`);
        group.append(svgNode("text", { x: cx - NODE / 2 - 4, y: cy + 4, "text-anchor": "end", "font-size": 10 },
                             FEATURES[i]));
        const toggle = () => {
          const features = on ? config.features.filter((f) => f !== FEATURES[i]) : [...config.features, FEATURES[i]];
          configure({ ...readControls(), features: FEATURES.filter((f) => features.includes(f)) });
        };
        group.addEventListener("click", toggle);
        onEnterOrSpace(group, toggle);
      }
      parts.push(group);
    }
  });
  keepingFocus(svg, () => svg.replaceChildren(...parts));
}

function drawThumbnails(datasets) {
  // Each dataset as a small picture of its points, pressed to choose it (TensorFlow Playground's
  // thumbnails); the drop-down stays for the keyboard and screen readers too.
  $("thumbnails").replaceChildren(...Object.entries(datasets).map(([name, data]) => {
    const button = document.createElement("button");
    button.className = "thumbnail";
    button.dataset.dataset = name;
    button.setAttribute("aria-label", `dataset ${name}`);
    button.title = name;
    const canvas = Object.assign(document.createElement("canvas"), { width: 48, height: 48 });
    const ctx = canvas.getContext("2d");
    const regression = data.regression;
    data.points.forEach(([px, py], i) => {
      const t = data.targets[i];
      ctx.fillStyle = colour(regression ? t : 2 * t - 1);
      ctx.fillRect(((px + 6) / 12) * 46, ((6 - py) / 12) * 46, 2.5, 2.5);
    });
    button.append(canvas);
    button.addEventListener("click", () => { // a regression set poses that problem, a labelled one the other
      configure({ ...readControls(), dataset: name, problem: data.regression ? "regression" : "classification" });
    });
    return button;
  }));
}

function markDataset(name) {
  for (const b of document.querySelectorAll(".thumbnail")) b.setAttribute("aria-pressed", b.dataset.dataset === name);
}

function setUp() {
  for (const id of ["dataset", "noise", "train_ratio", "batch_size", "learning_rate", "activation",
                    "optimizer", "regularization", "regularization_rate", "problem"]) {
    $(id).addEventListener("change", () => configure(readControls()));
  }
  $("add_layer").addEventListener("click", () => configure({ ...readControls(), hidden: [...config.hidden, 4] }));
  $("remove_layer").addEventListener("click", () => configure({ ...readControls(), hidden: config.hidden.slice(0, -1) }));
  $("play").addEventListener("click", async () => {
    const state = await call("POST", frame && frame.playing ? "/api/pause" : "/api/play");
    if (state) draw(state);
  });
  $("step").addEventListener("click", async () => { const s = await call("POST", "/api/step"); if (s) draw(s); });
  $("reset").addEventListener("click", async () => { const s = await call("POST", "/api/reset"); if (s) draw(s); });
  $("show_code").addEventListener("click", async () => {
    const response = await fetch("/api/code");
    $("code").textContent = await response.text();
    $("code").hidden = false;
  });
  for (const id of ["show_test", "discretize"]) $(id).addEventListener("change", () => frame && draw(frame));
  new EventSource("/api/stream").onmessage = (event) => draw(JSON.parse(event.data));
  call("GET", "/api/datasets").then((datasets) => {
    if (datasets) { drawThumbnails(datasets); if (config) markDataset(config.dataset); }
  });
  window.addEventListener("hashchange", () => { // a link pasted into this tab: its run, from the start
    const linked = configFromUrl();
    if (linked && JSON.stringify(linked) !== JSON.stringify(config)) configure(linked);
  });
  const shared = configFromUrl();
  if (shared) configure(shared); // a shared link: its configuration, trained afresh from its seed
  else call("GET", "/api/state").then((state) => state && apply(state));
}

setUp();
