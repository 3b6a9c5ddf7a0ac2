// One linked phone's page: the mirror of its chats, what the medic types, the link's
// state and the logout countdown. Served by the session's own process; it keeps
// everything in memory (no storage of any kind) and clears itself when the session ends.
"use strict";

(() => {
  const token = new URLSearchParams(location.search).get("t") || "";
  const $ = (id) => document.getElementById(id);
  const KIOSK_CHAT = "kiosk";
  const COUNTDOWN_FROM = 30; // seconds: the countdown shows in the last half minute
  const ACTIVITY_EVERY = 5000; // ms between "the medic is here" notes to the station

  let chats = new Map(); // id -> title
  let messages = new Map(); // id -> {id, chat, sender, body, sent_at}
  let pending = []; // [{ref, seq, chat, text}] typed here, not yet in the phone's mirror
  let fates = new Map(); // seq -> {seq, state, at, queued_at, ttl?, confirmed?}: no text
  let session16 = ""; // the phone names a command's message "<session16>.<seq>"
  let device = "";
  let fingerprint = "";
  let current = null;
  let nextRef = 1;
  let logoutAt = null;
  let logoutReason = "";
  let lastActivity = 0;
  let ended = false;
  const socket = new WebSocket(`ws://${location.host}/live?t=${encodeURIComponent(token)}`);

  function send(request) {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(request));
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text; // text only: never markup from the phone
    return node;
  }

  function time(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  const FATE_TEXT = {
    queued: "queued",
    sent: "✓ sent",
    applied: "✓✓ on the phone",
    expired: "expired: waiting for the medic on the phone",
    discarded: "discarded on the phone",
    undelivered: "never reached the phone",
  };

  function fateOf(seq) {
    return seq ? fates.get(seq) : undefined;
  }

  function fateTag(seq, fallback) {
    const fate = fateOf(seq);
    const tag = el("span", "fate", fate ? `${FATE_TEXT[fate.state] ?? fate.state} · ${time(fate.at)}` : fallback);
    tag.dataset.state = fate ? fate.state : "sending";
    if (seq) tag.dataset.seq = String(seq);
    return tag;
  }

  function seqOfMessage(id) {
    // The phone names the message a command became "<session16>.<seq>".
    if (!session16 || !id.startsWith(`${session16}.`)) return 0;
    return Number.parseInt(id.slice(session16.length + 1), 10) || 0;
  }

  function latest(chatId) {
    let at = 0;
    for (const m of messages.values()) if (m.chat === chatId && m.sent_at > at) at = m.sent_at;
    return at;
  }

  function renderChats() {
    const list = $("chat-list");
    const ids = [...chats.keys()].sort((a, b) => latest(b) - latest(a) || a.localeCompare(b));
    if (current === null || !chats.has(current)) current = ids[0] ?? null;
    list.replaceChildren(
      ...ids.map((id) => {
        const item = el("li");
        const button = el("button", "chat", chats.get(id));
        button.type = "button";
        button.dataset.chat = id;
        button.setAttribute("aria-current", id === current ? "true" : "false");
        button.addEventListener("click", () => {
          current = id;
          render();
          $("text").focus();
        });
        item.append(button);
        return item;
      }),
    );
  }

  function renderMessages() {
    const list = $("messages");
    $("chat-title").textContent = current ? chats.get(current) : "No chats yet";
    const shown = [...messages.values()]
      .filter((m) => m.chat === (current ?? KIOSK_CHAT))
      .sort((a, b) => a.sent_at - b.sent_at);
    const mirrored = new Set();
    const rows = shown.map((m) => {
      const item = el("li", m.sender.includes("kiosk") ? "message mine" : "message");
      item.append(el("span", "sender", m.sender), el("p", "body", m.body), el("time", "at", time(m.sent_at)));
      const seq = seqOfMessage(m.id);
      if (seq) {
        mirrored.add(seq);
        item.append(fateTag(seq, ""));
      }
      return item;
    });
    pending = pending.filter((p) => !p.seq || !mirroredAnywhere(p.seq));
    for (const p of pending) {
      if ((p.chat ?? KIOSK_CHAT) !== (current ?? KIOSK_CHAT)) continue;
      const item = el("li", "message mine pending");
      item.append(el("p", "body", p.text), fateTag(p.seq, p.seq ? "queued" : "sending…"));
      rows.push(item);
    }
    list.replaceChildren(...rows);
    list.scrollTop = list.scrollHeight;
  }

  function mirroredAnywhere(seq) {
    return messages.has(`${session16}.${seq}`);
  }

  function render() {
    renderChats();
    renderMessages();
  }

  function renderHealth(h) {
    const parts = [device ? `Phone ${device}` : `Phone ${fingerprint}`];
    parts.push(h.reachable ? "reachable" : "not reachable");
    if (h.last_heard) parts.push(`last contact ${new Date(h.last_heard * 1000).toLocaleTimeString()}`);
    parts.push(`${h.queued} queued`);
    if (h.oldest_queued_at) parts.push(`oldest ${Math.max(0, Math.round(Date.now() / 1000 - h.oldest_queued_at))} s`);
    if (h.battery !== null && h.battery !== undefined) parts.push(`battery ${h.battery}%`);
    $("who").textContent = parts.join(" · ");
  }

  function setLink(state, queued) {
    const banner = $("banner");
    banner.className = `banner ${state}`;
    const waiting = `${queued} message${queued === 1 ? "" : "s"} queued`;
    if (state === "online") banner.textContent = queued ? `Online · sending ${waiting}` : "Online";
    else if (state === "reconnecting") banner.textContent = `Reconnecting to the phone… ${waiting}`;
    else banner.textContent = `Offline: the phone is out of reach. ${waiting}; they go when it is back.`;
    banner.dataset.queued = String(queued);
  }

  function tickCountdown() {
    const box = $("countdown");
    if (logoutAt === null || ended) {
      box.hidden = true;
      return;
    }
    const left = Math.max(0, Math.ceil((logoutAt - Date.now()) / 1000));
    if (left > COUNTDOWN_FROM) {
      box.hidden = true;
      return;
    }
    const why = logoutReason === "inactivity" ? "no activity" : logoutReason === "scheduled" ? "the scheduled wipe" : "the session's time limit";
    box.textContent = `Logging out in ${left} s (${why}).` + (logoutReason === "inactivity" ? " Press any key to stay." : "");
    box.hidden = false;
  }

  function wipe(reason, undelivered) {
    // The session is over: drop every message from memory and from the page. What is
    // left is content-free: which of the commands typed here never reached the phone.
    ended = true;
    chats = new Map();
    messages = new Map();
    pending = [];
    fates = new Map();
    const notes = [el("p", "ended", `Logged out (${reason}). Nothing of this session is kept.`)];
    if (undelivered && undelivered.length) {
      const n = undelivered.length;
      const lost = el("p", "ended undelivered", `${n} message${n === 1 ? "" : "s"} typed here never reached the phone (seq ${undelivered.join(", ")}).`);
      lost.dataset.state = "undelivered";
      notes.push(lost);
    }
    document.body.replaceChildren(...notes);
  }

  socket.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    switch (msg.type) {
      case "hello":
        session16 = msg.session;
        fingerprint = msg.fingerprint;
        $("who").textContent = `Phone ${msg.fingerprint}`;
        break;
      case "fates":
        for (const f of msg.items) fates.set(f.seq, f);
        renderMessages();
        break;
      case "health":
        if (msg.device) device = msg.device;
        renderHealth(msg);
        break;
      case "mirror":
        if (msg.reset) {
          chats = new Map();
          messages = new Map();
        }
        for (const c of msg.chats) chats.set(c.id, c.title);
        for (const m of msg.messages) messages.set(m.id, m);
        render();
        break;
      case "link":
        setLink(msg.state, msg.queued);
        break;
      case "sent": {
        const p = pending.find((q) => q.ref === msg.ref);
        if (p) p.seq = msg.seq;
        renderMessages();
        break;
      }
      case "acked":
        renderMessages();
        break;
      case "error": {
        pending = pending.filter((p) => p.ref !== msg.ref);
        const box = $("compose-error");
        box.textContent = msg.message;
        box.hidden = false;
        renderMessages();
        break;
      }
      case "deadline":
        logoutAt = Date.now() + msg.in_s * 1000;
        logoutReason = msg.reason;
        tickCountdown();
        break;
      case "ended":
        wipe(msg.reason, msg.undelivered);
        break;
    }
  };
  socket.onclose = () => {
    if (!ended) wipe("the station ended the session");
  };

  $("compose").addEventListener("submit", (event) => {
    event.preventDefault();
    const box = $("text");
    const text = box.value.trim();
    if (!text) return;
    const ref = nextRef++;
    const chat = current && current !== KIOSK_CHAT ? current : null;
    pending.push({ ref, seq: 0, chat, text });
    $("compose-error").hidden = true;
    send({ op: "send", ref, chat, text });
    box.value = "";
    renderMessages();
  });
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("compose").requestSubmit();
    }
  });
  $("logout").addEventListener("click", () => {
    $("logout").disabled = true;
    $("logout").textContent = "Logging out…";
    send({ op: "logout" });
  });
  for (const kind of ["keydown", "pointerdown"]) {
    document.addEventListener(kind, () => {
      if (Date.now() - lastActivity < ACTIVITY_EVERY) return;
      lastActivity = Date.now();
      send({ op: "activity" });
    });
  }
  setInterval(tickCountdown, 1000);
  render();
})();
