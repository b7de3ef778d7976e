// Live captions from an asrbox over MQTT-over-WebSockets (mqtt.js). Partial text is grey, final text solid;
// the view keeps the newest lines in sight; the client reconnects by itself and picks up where it was.
// Settings: /config.json from the box, overridden by the page's query: ?ws=ws://host:9001&device=room1
// &prefix=asrbox&large=1&user=...&password=... (a read-only broker account; never the box's own).
(function () {
  "use strict";
  const MAX_LINES = 300;
  const q = new URLSearchParams(location.search);
  const linesEl = document.getElementById("lines");
  const statusEl = document.getElementById("status");
  const byId = new Map(); // utterance_id -> element
  let boxOnline = null;
  let connected = false;

  function setStatus() {
    const text = !connected ? "broker: reconnecting…" : boxOnline === false ? "box offline" : "live";
    statusEl.textContent = text;
    statusEl.dataset.state = !connected ? "reconnecting" : boxOnline === false ? "offline" : "live";
    statusEl.className = "status " + (connected && boxOnline !== false ? "on" : "off");
  }

  function nearBottom() {
    return linesEl.scrollHeight - linesEl.scrollTop - linesEl.clientHeight < 80;
  }

  // speakers (S1, S2...): each gets one of 6 colours by its number, its name (or label) before the text
  function speakerClass(label) {
    const n = /^S(\d+)$/.exec(label || "");
    return n ? " spk spk" + ((parseInt(n[1], 10) - 1) % 6) : "";
  }

  function show(id, text, final, speaker, name) {
    const follow = nearBottom();
    let el = byId.get(id);
    if (!el) {
      el = document.createElement("p");
      el.dataset.utterance = id;
      linesEl.appendChild(el);
      byId.set(id, el);
      while (linesEl.children.length > MAX_LINES) {
        const old = linesEl.firstElementChild;
        byId.delete(old.dataset.utterance);
        old.remove();
      }
    } else if (el.classList.contains("final") && !final) {
      return; // a late partial never overwrites its final
    }
    el.className = "line " + (final ? "final" : "partial") + (final ? speakerClass(speaker) : "");
    el.textContent = "";
    if (final && speaker) {
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = (name || speaker) + ": ";
      el.appendChild(who);
    }
    el.appendChild(document.createTextNode(text));
    if (follow) linesEl.scrollTop = linesEl.scrollHeight;
  }

  function setLarge(on) {
    document.body.classList.toggle("large", on);
  }

  document.getElementById("size").addEventListener("click", () => setLarge(!document.body.classList.contains("large")));
  document.addEventListener("keydown", (e) => { if (e.key === "l" || e.key === "L") setLarge(!document.body.classList.contains("large")); });
  setLarge(q.get("large") === "1");

  fetch("config.json").then((r) => (r.ok ? r.json() : {})).catch(() => ({})).then((cfg) => {
    const ws = q.get("ws") || cfg.websocket_url || `ws://${location.hostname || "localhost"}:9001`;
    const root = `${q.get("prefix") || cfg.prefix || "asrbox"}/${q.get("device") || cfg.device_id || "+"}`;
    document.getElementById("title").textContent = `asrbox ${q.get("device") || cfg.device_id || ""}`;
    const client = mqtt.connect(ws, {
      reconnectPeriod: 2000,
      connectTimeout: 5000,
      clean: true,
      username: q.get("user") || undefined,
      password: q.get("password") || undefined,
    });
    client.on("connect", () => {
      connected = true;
      setStatus();
      client.subscribe([`${root}/transcript/partial`, `${root}/transcript/final`, `${root}/status`], { qos: 0 });
    });
    client.on("close", () => { connected = false; setStatus(); });
    client.on("offline", () => { connected = false; setStatus(); });
    client.on("message", (topic, payload) => {
      const text = new TextDecoder().decode(payload);
      if (topic.endsWith("/status")) {
        boxOnline = text === "online";
        setStatus();
        return;
      }
      let msg;
      try { msg = JSON.parse(text); } catch (e) { return; }
      if (!msg || typeof msg.text !== "string" || !msg.utterance_id) return;
      show(msg.utterance_id, msg.text, topic.endsWith("/final"), msg.speaker, msg.speaker_name);
    });
    window.asrboxCaptions = { client }; // for tests and debugging
  });
  setStatus();
})();
