// islr serve: the teach panel. Signs and their examples live in the server's workspace (GET
// /api/teach); recording sends {"record": SIGN} over the camera's WebSocket, and each sign the
// segmenter then cuts comes back as an example. Each example replays as a small skeleton (its
// stored hands and pose). Train starts a training process on the server; its progress is polled
// until it ends, and a finished model is served at once. Uses app.js's globals ($, socket,
// showMessage, loadInfo, HAND_LINES, POSE_LINES, COLOURS); window.islr.teach holds its state.
"use strict";

const POLL_MS = 1000; // how often the training's progress is read
const REPLAY_FPS = 15; // frames a second of the examples' replays
const THUMB = { width: 96, height: 72 };

const teach = (islr.teach = { signs: [], runs: [], recording: null, training: null,
  serving: null, examples: 0, lastRun: null });
const replays = new Map(); // example id -> {frames, first, canvas}
let polling = null; // the timer of the next progress read, while a training runs

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, options);
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `the server answered ${response.status}`);
  return answer;
}

async function refresh() {
  let state;
  try {
    state = await api("GET", "/api/teach");
  } catch (error) {
    return; // no workspace: the panel stays hidden
  }
  $("teach").hidden = false;
  Object.assign(teach, { signs: state.signs, runs: state.runs, training: state.training,
    serving: state.serving });
  teach.examples = state.signs.reduce((n, sign) => n + sign.examples.length, 0);
  $("workspace").textContent = `workspace: ${state.workspace}`;
  renderSigns();
  renderRuns();
  if (state.training && !polling) {
    polling = setTimeout(() => {
      polling = null;
      refresh();
    }, POLL_MS);
  }
}

function renderSigns() {
  const box = $("signs");
  box.replaceChildren();
  for (const sign of teach.signs) {
    const card = document.createElement("div");
    card.className = "sign" + (teach.recording === sign.name ? " recording" : "");
    card.dataset.sign = sign.name;
    const head = document.createElement("div");
    head.className = "sign-head";
    const name = document.createElement("b");
    name.textContent = sign.name;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = `${sign.examples.length} example${sign.examples.length === 1 ? "" : "s"}`;
    const record = button(teach.recording === sign.name ? "Stop recording" : "Record",
      () => setRecording(teach.recording === sign.name ? null : sign.name), "record");
    const file = document.createElement("input");
    file.type = "file";
    file.accept = "video/*";
    file.className = "example-file";
    file.addEventListener("change", () => uploadExample(sign.name, file));
    const remove = button("Delete sign", () => deleteSign(sign.name), "secondary");
    head.append(name, count, record, file, remove);
    const examples = document.createElement("div");
    examples.className = "examples";
    for (const id of sign.examples) examples.append(exampleTile(id));
    card.append(head, examples);
    box.append(card);
  }
}

function button(text, onClick, className) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  if (className) element.className = className;
  element.addEventListener("click", onClick);
  return element;
}

function exampleTile(id) {
  const tile = document.createElement("div");
  tile.className = "example";
  tile.dataset.id = id;
  const canvas = document.createElement("canvas");
  canvas.width = THUMB.width;
  canvas.height = THUMB.height;
  const remove = button("×", () => deleteExample(id), "delete");
  remove.title = "delete this example";
  tile.append(canvas, remove);
  const known = replays.get(id);
  if (known) known.canvas = canvas;
  else {
    replays.set(id, { frames: null, first: 0, canvas });
    api("GET", `/api/teach/examples/${id}`).then((replay) => {
      Object.assign(replays.get(id), { frames: replay.frames, first: replay.first });
    }).catch(() => {});
  }
  return tile;
}

// One clock for every replay: each example shows frame (tick mod its length).
function drawReplays(tick) {
  for (const replay of replays.values()) {
    if (!replay.frames || !replay.canvas.isConnected) continue;
    const points = replay.frames[tick % replay.frames.length];
    const context = replay.canvas.getContext("2d");
    context.fillStyle = "#111827";
    context.fillRect(0, 0, THUMB.width, THUMB.height);
    const at = (i) => {
      const p = points[i - replay.first];
      return p && [p[0] * THUMB.width, p[1] * THUMB.height];
    };
    const lines = (base, pairs, colour) => strokePairs(context, at, base, pairs, colour, 1.5);
    lines(POSE, POSE_LINES, COLOURS.pose);
    lines(LEFT_HAND, HAND_LINES, COLOURS.left);
    lines(RIGHT_HAND, HAND_LINES, COLOURS.right);
  }
}

let replayTick = 0;
setInterval(() => drawReplays(replayTick++), 1000 / REPLAY_FPS);

function setRecording(sign) {
  if (sign && !(socket && socket.readyState === WebSocket.OPEN)) {
    showMessage("start the camera first: recording keeps the signs it cuts");
    return;
  }
  teach.recording = sign;
  sendRecording();
  renderSigns();
}

function sendRecording() {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ record: teach.recording }));
  }
}

// Called by app.js: the camera session is ready (again), or a frame ended a sign it kept.
function teachSessionReady() {
  if (teach.recording) sendRecording();
}

function teachExample(example) {
  if (example.error) {
    showMessage(example.error);
    return;
  }
  const sign = teach.signs.find((s) => s.name === example.sign);
  if (sign) sign.examples.push(example.id);
  teach.examples += 1;
  renderSigns();
}

async function addNewSign(event) {
  event.preventDefault();
  try {
    await api("POST", "/api/teach/signs", { name: $("sign-name").value });
    $("sign-name").value = "";
    showMessage("");
  } catch (error) {
    showMessage(error.message);
  }
  await refresh();
}

async function deleteSign(name) {
  if (!confirm(`Delete the sign ${name} and its examples?`)) return;
  if (teach.recording === name) setRecording(null);
  try {
    await api("DELETE", `/api/teach/signs/${encodeURIComponent(name)}`);
  } catch (error) {
    showMessage(error.message);
  }
  await refresh();
}

async function deleteExample(id) {
  try {
    await api("DELETE", `/api/teach/examples/${id}`);
    replays.delete(id);
  } catch (error) {
    showMessage(error.message);
  }
  await refresh();
}

async function uploadExample(sign, input) {
  const file = input.files[0];
  if (!file) return;
  showMessage("");
  $("progress").textContent = `reading ${file.name}…`;
  try {
    const response = await fetch(`/api/teach/signs/${encodeURIComponent(sign)}/examples`, {
      method: "POST", body: file, headers: { "Content-Type": file.type ||
        VIDEO_TYPES[file.name.split(".").pop().toLowerCase()] || "application/octet-stream" } });
    const answer = await response.json();
    if (!response.ok) showMessage(answer.error || `the upload failed (${response.status})`);
    else if (answer.note) showMessage(`${file.name}: ${answer.note}`);
  } catch (error) {
    showMessage("the upload failed: is the server still running?");
  }
  $("progress").textContent = "";
  await refresh();
}

function describeRun(run) {
  const parts = [`${run.name}: ${run.status}`];
  if (run.done_epochs || run.status === "running") {
    parts.push(run.epochs ? `epoch ${run.done_epochs}/${run.epochs}` : `epoch ${run.done_epochs}`);
  }
  if (run.loss != null) parts.push(`loss ${run.loss.toFixed(3)}`);
  if (run.accuracy != null) parts.push(`validation accuracy ${percent(run.accuracy)}`);
  if (run.seconds_left != null) parts.push(`${Math.ceil(run.seconds_left)} s left`);
  if (run.status === "done" && run.accuracy == null) { // a model without epochs: what it measured
    for (const [name, accuracy] of Object.entries(run.measured || {})) {
      parts.push(`${name.replaceAll("_", "-")} accuracy ${percent(accuracy)}`);
    }
  }
  if (run.message && run.status !== "done") parts.push(run.message);
  return parts.join(" · ");
}

function renderRuns() {
  const latest = teach.runs[0];
  const running = latest && latest.status === "running";
  $("train").disabled = running;
  $("cancel").disabled = !running;
  const bar = $("progress-bar");
  bar.hidden = !latest;
  bar.value = !latest ? 0 : latest.status === "done" ? 1 :
    latest.epochs ? latest.done_epochs / latest.epochs : 0;
  $("progress").textContent = latest ? describeRun(latest) : "no model trained yet";
  if (latest && teach.lastRun === latest.name && latest.status === "done" && !teach.switched) {
    teach.switched = true; // the run this page started: serve its model
    useModel(latest.name);
  }
  const select = $("model-select");
  const options = [["", "the model it started with"]];
  for (const run of teach.runs) if (run.model) options.push([run.name, `${run.name} (${run.signs.join(", ")})`]);
  select.replaceChildren(...options.map(([value, text]) => new Option(text, value)));
  select.value = teach.serving || "";
  const link = $("download-model");
  link.hidden = !teach.serving;
  if (teach.serving) link.href = `/api/teach/runs/${teach.serving}/model.safetensors`;
}

async function train() {
  showMessage("");
  try {
    const run = await api("POST", "/api/teach/train");
    teach.lastRun = run.name;
    teach.switched = false;
  } catch (error) {
    showMessage(error.message);
  }
  await refresh();
}

async function cancelTraining() {
  try {
    await api("POST", "/api/teach/cancel");
  } catch (error) {
    showMessage(error.message);
  }
  await refresh();
}

async function useModel(name) {
  try {
    const served = await api("POST", "/api/teach/model", { run: name || null });
    teach.serving = served.serving;
  } catch (error) {
    showMessage(error.message);
  }
  await loadInfo();
  renderRuns();
}

$("sign-form").addEventListener("submit", addNewSign);
$("train").addEventListener("click", train);
$("cancel").addEventListener("click", cancelTraining);
$("model-select").addEventListener("change", (event) => useModel(event.target.value));
refresh();
