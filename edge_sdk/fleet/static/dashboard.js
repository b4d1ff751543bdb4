// edge-sdk dashboard: one card per camera, live over a WebSocket from `edge-sdk dashboard`. Plain JS, no
// libraries, nothing fetched from elsewhere.
"use strict";

const COLORS = ["rgb(0,255,102)", "rgb(255,200,0)", "rgb(0,190,255)", "rgb(255,80,200)", "rgb(255,120,40)"];
const STALE_AFTER_S = 5;
let skeleton = [];
let clockOffset = 0; // server time - browser time
const cards = new Map();

function card(device) {
  if (cards.has(device)) return cards.get(device);
  const el = document.createElement("div");
  el.className = "card";
  el.innerHTML = '<div class="title"><span class="name"></span><span class="badge unknown">?</span></div>' +
    '<canvas width="320" height="240"></canvas><div class="stats"></div>';
  el.querySelector(".name").textContent = device;
  const grid = document.getElementById("grid");
  const after = [...cards.keys()].sort().find((name) => name > device);
  grid.insertBefore(el, after ? cards.get(after).el : null);
  const entry = {el: el, canvas: el.querySelector("canvas"), badge: el.querySelector(".badge"),
                 stats: el.querySelector(".stats"), info: null};
  cards.set(device, entry);
  document.getElementById("count").textContent = cards.size + " camera(s)";
  return entry;
}

function draw(entry, info) {
  const ctx = entry.canvas.getContext("2d");
  const W = entry.canvas.width, H = entry.canvas.height;
  ctx.clearRect(0, 0, W, H);
  if (!info.w || !info.h) return;
  const scale = Math.min(W / info.w, H / info.h);
  const ox = (W - info.w * scale) / 2, oy = (H - info.h * scale) / 2;
  ctx.strokeStyle = "rgb(70,70,80)";
  ctx.strokeRect(ox + 0.5, oy + 0.5, info.w * scale - 1, info.h * scale - 1);
  info.people.forEach((kps, p) => {
    const color = COLORS[p % COLORS.length];
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 3;
    for (const [a, b] of skeleton) {
      if (kps[a][2] > 0 && kps[b][2] > 0) {
        ctx.beginPath();
        ctx.moveTo(ox + kps[a][0] * scale, oy + kps[a][1] * scale);
        ctx.lineTo(ox + kps[b][0] * scale, oy + kps[b][1] * scale);
        ctx.stroke();
      }
    }
    for (const [x, y, s] of kps) {
      if (s > 0) { ctx.beginPath(); ctx.arc(ox + x * scale, oy + y * scale, 3, 0, 2 * Math.PI); ctx.fill(); }
    }
  });
}

function showStats(entry) {
  const info = entry.info;
  const age = info.last_message ? Date.now() / 1000 + clockOffset - info.last_message : null;
  entry.badge.className = "badge " + info.state;
  entry.badge.textContent = info.state;
  const stale = age !== null && age > STALE_AFTER_S;
  entry.stats.className = "stats" + (stale ? " stale" : "");
  entry.stats.textContent = info.fps.toFixed(1) + " fps \u00b7 " + info.latency_ms.toFixed(1) + " ms \u00b7 " +
    info.drops + " drops \u00b7 " + info.people.length + " people" +
    (stale ? " \u00b7 no message for " + Math.round(age) + " s" : "");
}

function connect(delay) {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  const link = document.getElementById("link");
  ws.onopen = () => { link.textContent = "live"; delay = 500; };
  ws.onmessage = (event) => {
    const update = JSON.parse(event.data);
    if (update.skeleton) skeleton = update.skeleton;
    clockOffset = update.now - Date.now() / 1000;
    for (const info of update.devices) {
      const entry = card(info.device);
      entry.info = info;
      draw(entry, info);
      showStats(entry);
    }
  };
  ws.onclose = () => {
    link.textContent = "disconnected, retrying...";
    setTimeout(() => connect(Math.min(delay * 2, 8000)), delay);
  };
}

setInterval(() => { for (const entry of cards.values()) if (entry.info) showStats(entry); }, 1000);
connect(500);
