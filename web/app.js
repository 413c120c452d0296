// islr serve: the page's logic. The camera's frames go to the server as JPEG over a WebSocket,
// one at a time and at most info.fps a second; each answer carries the frame's landmarks (drawn
// as a skeleton over the video), the segmenter's state and, when the frame ends a sign, its top 5.
// window.islr holds the figures the tests read: frames answered, frames/s, delays (ms from
// grabbing a frame to drawing its skeleton) and the server's share of them.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_WIDTH = 640; // frames are sent at most this wide: MediaPipe needs no more
const HISTORY = 10; // signs kept in the history list
const RECOGNISED_MS = 1500; // how long the state shows "recognised" after a sign
// Media types by suffix, for files the browser gives no type (the server reads the type only).
const VIDEO_TYPES = { mp4: "video/mp4", m4v: "video/x-m4v", mov: "video/quicktime",
  webm: "video/webm", avi: "video/x-msvideo", mkv: "video/x-matroska" };

// Kaggle landmark order: face 0-467, left hand 468-488, pose 489-521, right hand 522-542.
const LEFT_HAND = 468, POSE = 489, RIGHT_HAND = 522;
const HAND_LINES = [[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [6, 7], [7, 8], [5, 9],
  [9, 10], [10, 11], [11, 12], [9, 13], [13, 14], [14, 15], [15, 16], [13, 17], [17, 18],
  [18, 19], [19, 20], [0, 17]];
const POSE_LINES = [[11, 12], [11, 13], [13, 15], [12, 14], [14, 16], [11, 23], [12, 24],
  [23, 24], [15, 17], [15, 19], [15, 21], [17, 19], [16, 18], [16, 20], [16, 22], [18, 20],
  [23, 25], [25, 27], [24, 26], [26, 28], [0, 2], [2, 7], [0, 5], [5, 8], [9, 10]];
const COLOURS = { face: "rgba(255,255,255,0.45)", pose: "#e5e7eb", left: "#f59e0b", right: "#38bdf8" };

const islr = (window.islr = { info: null, frames: 0, drawn: 0, hands: 0, signs: [], delays: [],
  server: [], fps: 0, stamps: [], errors: [] });
let stream = null, socket = null, busy = false, sentAt = 0, nextAt = 0, recognisedUntil = 0;
const grab = document.createElement("canvas");

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
  if (text) islr.errors.push(text);
}

function percent(p) {
  return (100 * p).toFixed(1) + "%";
}

function renderResult(box, result, title) {
  box.classList.remove("empty");
  box.replaceChildren();
  const head = document.createElement("div");
  head.className = "title";
  head.textContent = title;
  box.append(head);
  const bars = document.createElement("div");
  bars.className = "bars";
  for (const { sign, probability } of result.predictions) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.sign = sign;
    row.dataset.probability = String(probability);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = sign;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = percent(probability);
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(probability);
    row.append(name, track, value);
    bars.append(row);
  }
  box.append(bars);
  if (result.note) { // a video cut short: "read 12 of 58 frames: ..."
    const note = document.createElement("div");
    note.className = "note";
    note.textContent = result.note;
    box.append(note);
  }
  if (!result.landmarks_seen) {
    const note = document.createElement("div");
    note.className = "note";
    note.textContent = "none of the model's landmarks was seen: this is a guess";
    box.append(note);
  }
}

async function loadInfo() {
  try {
    const response = await fetch("/api/info");
    const info = await response.json();
    islr.info = info;
    const accuracy = info.test_accuracy == null ? "" :
      ` · test accuracy ${percent(info.test_accuracy)}`;
    $("model").textContent = `model: ${info.checkpoint} · ${info.signs.length} signs${accuracy}`;
    $("count").textContent = info.signs.length;
    $("vocabulary").textContent = info.signs.join(", ");
  } catch (error) {
    showMessage("cannot reach the islr server: is `islr.py serve` still running?");
  }
}

function setState(state) {
  const badge = $("state");
  const shown = performance.now() < recognisedUntil && state !== "off" ? "recognised" : state;
  badge.textContent = shown;
  badge.className = "state " + shown;
}

// Lines between pairs of points (offsets from `base`); `at(i)` gives point i in pixels, or
// nothing where the point was not detected. The live overlay and teach.js's replays use it.
function strokePairs(context, at, base, pairs, colour, lineWidth) {
  context.strokeStyle = colour;
  context.lineWidth = lineWidth;
  context.beginPath();
  for (const [a, b] of pairs) {
    const p = at(base + a), q = at(base + b);
    if (p && q) {
      context.moveTo(p[0], p[1]);
      context.lineTo(q[0], q[1]);
    }
  }
  context.stroke();
}

function drawSkeleton(points) {
  const overlay = $("overlay");
  const video = $("video");
  const width = video.videoWidth || 640, height = video.videoHeight || 480;
  if (overlay.width !== width || overlay.height !== height) {
    overlay.width = width;
    overlay.height = height;
  }
  const context = overlay.getContext("2d");
  context.clearRect(0, 0, width, height);
  const at = (i) => points[i] && [points[i][0] * width, points[i][1] * height];
  const lines = (base, pairs, colour, lineWidth) =>
    strokePairs(context, at, base, pairs, colour, lineWidth);
  const dots = (first, last, colour, radius) => {
    context.fillStyle = colour;
    for (let i = first; i < last; i++) {
      const p = at(i);
      if (p) context.fillRect(p[0] - radius, p[1] - radius, 2 * radius, 2 * radius);
    }
  };
  dots(0, LEFT_HAND, COLOURS.face, 1);
  lines(POSE, POSE_LINES, COLOURS.pose, 4);
  dots(POSE, RIGHT_HAND, COLOURS.pose, 3);
  lines(LEFT_HAND, HAND_LINES, COLOURS.left, 3);
  dots(LEFT_HAND, POSE, COLOURS.left, 3);
  lines(RIGHT_HAND, HAND_LINES, COLOURS.right, 3);
  dots(RIGHT_HAND, 543, COLOURS.right, 3);
}

function updateStats() {
  const now = performance.now();
  islr.stamps = islr.stamps.filter((t) => now - t < 2000);
  islr.fps = islr.stamps.length / 2;
  const recent = islr.delays.slice(-30).slice().sort((a, b) => a - b);
  const median = recent.length ? recent[Math.floor(recent.length / 2)] : 0;
  $("stats").textContent = `${islr.fps.toFixed(1)} frames/s · ${median.toFixed(0)} ms frame to skeleton`;
}

function addSign(result) {
  islr.signs.push(result);
  recognisedUntil = performance.now() + RECOGNISED_MS;
  const best = result.predictions[0];
  renderResult($("current"), result, `${best.sign} (${result.frames} frames)`);
  const item = document.createElement("li");
  item.textContent = best.sign + " ";
  const probability = document.createElement("span");
  probability.className = "probability";
  probability.textContent = percent(best.probability);
  item.append(probability);
  const history = $("history");
  history.prepend(item);
  while (history.children.length > HISTORY) history.lastChild.remove();
}

function onMessage(event) {
  let message;
  try {
    message = JSON.parse(event.data);
  } catch {
    return;
  }
  if (message.type === "frame") {
    busy = false;
    islr.frames += 1;
    drawSkeleton(message.points);
    islr.drawn += message.points.some((p) => p) ? 1 : 0;
    islr.hands = message.points.slice(LEFT_HAND, POSE).concat(message.points.slice(RIGHT_HAND))
      .filter((p) => p).length;
    islr.delays.push(performance.now() - sentAt);
    islr.server.push(message.ms);
    islr.stamps.push(performance.now());
    if (message.sign) addSign(message.sign);
    if (message.example) teachExample(message.example); // teach.js: a recorded example
    setState(message.state);
    updateStats();
  } else if (message.type === "error") {
    busy = false;
    showMessage(message.message);
  } else if (message.type === "dropped") {
    busy = false;
  } else if (message.type === "ready") {
    showMessage("");
    setState("waiting");
    teachSessionReady(); // teach.js: a sign being recorded goes on being recorded
  }
}

function pump() {
  if (!stream) return;
  const video = $("video");
  const now = performance.now();
  if (socket && socket.readyState === WebSocket.OPEN && !busy && now >= nextAt &&
      video.readyState >= 2 && video.videoWidth) {
    const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
    grab.width = Math.round(video.videoWidth * scale);
    grab.height = Math.round(video.videoHeight * scale);
    grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
    busy = true;
    sentAt = now;
    nextAt = now + 1000 / islr.info.fps;
    grab.toBlob((blob) => {
      if (blob && socket && socket.readyState === WebSocket.OPEN) socket.send(blob);
      else busy = false;
    }, "image/jpeg", 0.8);
  }
  setTimeout(pump, 5);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/api/live`);
  socket.binaryType = "arraybuffer";
  socket.onmessage = onMessage;
  socket.onclose = (event) => {
    busy = false;
    if (stream) {
      const why = event.code === 1009 ? "a frame was too large" : "the connection closed";
      showMessage(`camera session ended: ${why}` + (event.code === 1013 ? " (server busy)" : ""));
      stop();
    }
  };
}

async function start() {
  if (!islr.info) await loadInfo();
  if (!islr.info) return;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 },
      audio: false });
  } catch (error) {
    showMessage(`no camera: ${error.message || error.name}`);
    return;
  }
  const video = $("video");
  video.srcObject = stream;
  await video.play();
  $("placeholder").hidden = true;
  $("start").disabled = true;
  $("stop").disabled = false;
  connect();
  pump();
}

function stop() {
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
  if (socket) socket.close();
  socket = null;
  busy = false;
  $("video").srcObject = null;
  $("overlay").getContext("2d").clearRect(0, 0, $("overlay").width, $("overlay").height);
  $("placeholder").hidden = false;
  $("start").disabled = false;
  $("stop").disabled = true;
  setState("off");
}

async function upload(event) {
  event.preventDefault();
  const file = $("file").files[0];
  const box = $("upload-result");
  if (!file) {
    showMessage("choose a video file first");
    return;
  }
  $("upload").disabled = true;
  box.classList.add("empty");
  box.textContent = `reading ${file.name}…`;
  try {
    const response = await fetch("/api/upload", { method: "POST", body: file,
      headers: { "Content-Type": file.type || VIDEO_TYPES[file.name.split(".").pop().toLowerCase()] ||
        "application/octet-stream" } });
    const result = await response.json();
    if (!response.ok) {
      box.textContent = "";
      showMessage(result.error || `the upload failed (${response.status})`);
    } else {
      showMessage("");
      renderResult(box, result, `${file.name}: ${result.frames} frames, ${result.seconds} s`);
    }
  } catch (error) {
    box.textContent = "";
    showMessage("the upload failed: is the server still running?");
  } finally {
    $("upload").disabled = false;
  }
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("upload-form").addEventListener("submit", upload);
loadInfo();
