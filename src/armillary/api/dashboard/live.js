// The live feed: one WebSocket (/api/v1/ws) shared by every page, with channels
// subscribed by id as docs/api.md ("Live channels") describes. Pages call `subscribe(channel, filters,
// onFrame)` and get back a function that unsubscribes; when the socket drops, it is
// opened again (with a growing delay) and every subscription still held is sent again,
// and pages are told (`onStatus`) so they can list afresh. There is no polling
// fallback: without the socket the page shows what it loaded and says "offline".

let socket = null;
let next = 1;
let delayMs = 500;
let wanted = false;
const subscriptions = new Map(); // id -> {channel, payload, onFrame}
const statusListeners = new Set();
let status = "offline";

export function onStatus(listener) {
  statusListeners.add(listener);
  listener(status);
  return () => statusListeners.delete(listener);
}

function setStatus(value) {
  status = value;
  for (const listener of statusListeners) listener(value);
}

export function start() {
  wanted = true;
  if (!socket) open();
}

export function stop() {
  wanted = false;
  subscriptions.clear();
  if (socket) socket.close(1000);
  socket = null;
  setStatus("offline");
}

function open() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/api/v1/ws`);
  socket = ws;
  setStatus("connecting");
  ws.addEventListener("message", (message) => {
    // One message may carry several frames, one JSON document a line.
    for (const line of String(message.data).split("\n")) {
      if (!line) continue;
      let frame;
      try {
        frame = JSON.parse(line);
      } catch {
        continue;
      }
      receive(ws, frame);
    }
  });
  ws.addEventListener("close", (event) => {
    if (socket !== ws) return;
    socket = null;
    setStatus(event.code === 4001 ? "refused" : "offline");
    if (wanted && event.code !== 4001) {
      setTimeout(() => wanted && !socket && open(), delayMs);
      delayMs = Math.min(delayMs * 2, 15000);
    }
  });
}

function receive(ws, frame) {
  if (frame.channel === "system") {
    if (frame.type === "connected") {
      // The back-off is reset only once a subscription is SYNCED (below): a server
      // that accepts and then closes at once is not retried at full speed.
      if (subscriptions.size === 0) delayMs = 500;
      setStatus("live");
      for (const [id, sub] of subscriptions) write(ws, sub.channel, "subscribe", id, sub.payload);
      for (const sub of subscriptions.values()) sub.onFrame({ channel: "system", type: "reconnected", payload: {} });
    } else if (frame.type === "ping") {
      write(ws, "system", "pong", null, {});
    } else if (frame.type === "error" && frame.id && subscriptions.has(frame.id)) {
      subscriptions.get(frame.id).onFrame(frame);
    }
    return;
  }
  if (frame.type === "SYNCED") delayMs = 500;
  const sub = frame.id && subscriptions.get(frame.id);
  if (sub) sub.onFrame(frame);
}

function write(ws, channel, type, id, payload) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ channel, type, id, payload }));
}

/** Subscribe to `channel` with `payload` filters; returns the unsubscribe function. */
export function subscribe(channel, payload, onFrame) {
  const id = `s${next++}`;
  subscriptions.set(id, { channel, payload, onFrame });
  if (socket && status === "live") write(socket, channel, "subscribe", id, payload);
  return () => {
    if (subscriptions.delete(id) && socket && status === "live") write(socket, channel, "unsubscribe", id, {});
  };
}
