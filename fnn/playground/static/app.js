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
    features: FEATURES.filter((f) => $(`feature_${f}`).checked),
    hidden: [...document.querySelectorAll("#neurons input")].map((input) => Number(input.value)),
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
  for (const f of FEATURES) $(`feature_${f}`).checked = c.features.includes(f);
  const neurons = $("neurons");
  neurons.replaceChildren(...c.hidden.map((n, i) => {
    const input = document.createElement("input");
    Object.assign(input, { type: "number", min: 1, max: 8, value: n, title: `neurons in layer ${i + 1}` });
    input.addEventListener("change", () => configure(readControls()));
    return input;
  }));
  $("layer_count").textContent = `${c.hidden.length} layer(s)`;
}

function apply(state) {
  config = state.config;
  writeControls(config);
  draw(state);
}

function colour(value) { // -1: orange, 0: white, 1: blue, as in TensorFlow Playground
  const t = Math.max(-1, Math.min(1, value));
  const [r, g, b] = t >= 0 ? [255 - 195 * t, 255 - 130 * t, 255 - 25 * t] : [255 + 10 * t, 255 + 100 * t, 255 + 200 * t];
  return `rgb(${r | 0},${g | 0},${b | 0})`;
}

function draw(state) {
  frame = state;
  $("epoch").textContent = state.epoch;
  $("test_loss").textContent = loss(state.test_loss);
  $("train_loss").textContent = loss(state.train_loss);
  $("diverged").hidden = !state.diverged;
  $("play").innerHTML = state.playing ? "&#10074;&#10074; Pause" : "&#9654; Play";
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
      ctx.fillStyle = colour(state.surface[row * n + col]);
      ctx.fillRect(col * cell, canvas.height - (row + 1) * cell, cell + 1, cell + 1); // y grows upwards
    }
  }
  const toPixel = ([x, y]) => [(x + range) / (2 * range) * canvas.width, (range - y) / (2 * range) * canvas.height];
  const regression = state.config.problem === "regression";
  for (const part of ["train", "test"]) {
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

function drawNetwork(state) {
  const svg = $("drawing"), ns = "http://www.w3.org/2000/svg";
  const sizes = [state.features.length, ...state.config.hidden, 1];
  const width = +svg.getAttribute("width"), height = +svg.getAttribute("height");
  const x = (layer) => 30 + (layer / (sizes.length - 1)) * (width - 60);
  const y = (layer, i) => ((i + 1) / (sizes[layer] + 1)) * height;
  const parts = [];
  const largest = Math.max(1e-6, ...state.weights.flat(2).map(Math.abs));
  state.weights.forEach((w, layer) => {
    w.forEach((row, i) => row.forEach((value, j) => {
      const line = document.createElementNS(ns, "line");
      for (const [k, v] of Object.entries({ x1: x(layer), y1: y(layer, i), x2: x(layer + 1), y2: y(layer + 1, j) })) {
        line.setAttribute(k, v);
      }
      line.setAttribute("stroke", colour(value / largest));
      line.setAttribute("stroke-width", 0.5 + 5 * Math.abs(value) / largest);
      line.setAttribute("class", "weight");
      parts.push(line);
    }));
  });
  sizes.forEach((size, layer) => {
    for (let i = 0; i < size; i++) {
      const node = document.createElementNS(ns, "circle");
      node.setAttribute("cx", x(layer)); node.setAttribute("cy", y(layer, i)); node.setAttribute("r", 9);
      node.setAttribute("fill", "#fff"); node.setAttribute("stroke", "#555");
      parts.push(node);
      if (layer === 0) {
        const label = document.createElementNS(ns, "text");
        label.setAttribute("x", 2); label.setAttribute("y", y(0, i) - 12);
        label.setAttribute("font-size", "10");
        label.textContent = state.features[i];
        parts.push(label);
      }
    }
  });
  svg.replaceChildren(...parts);
}

function setUp() {
  $("features").replaceChildren(...FEATURES.map((f) => {
    const label = document.createElement("label");
    const box = Object.assign(document.createElement("input"), { type: "checkbox", id: `feature_${f}` });
    box.addEventListener("change", () => configure(readControls()));
    label.append(box, ` ${f}`);
    return label;
  }));
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
  new EventSource("/api/stream").onmessage = (event) => draw(JSON.parse(event.data));
  call("GET", "/api/state").then((state) => state && apply(state));
}

setUp();
