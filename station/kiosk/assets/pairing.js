// The pairing screen: the open offer and one tab per linked phone. Each tab frames the
// session's own page, served by that session's process; this page never sees its content.
//
// It opens with a one-use launch link (`station open`, or the file --kiosk gives its
// browser): the token in the fragment is spent on the live channel, which answers with
// this page's own key. The key lives in this closure only: not in the address bar, not
// in any storage. A reload loses it; the station then gives its kiosk browser a new link.
"use strict";

(() => {
  let launch = new URLSearchParams(location.hash.slice(1)).get("launch");
  let key = null;
  if (launch) history.replaceState(null, "", location.pathname); // spent below, then gone
  const $ = (id) => document.getElementById(id);
  const tabs = $("tabs");
  const main = $("main");
  const sessions = new Map(); // session id -> {tab, panel}
  let selected = "pairing";
  let offerId = null;
  let expiresAt = 0;
  let codePausedUntil = 0; // wrong codes pause code pairing; the QR code always works
  let socket = null;
  let retryMs = 500;

  function select(panelId) {
    selected = panelId;
    for (const tab of tabs.querySelectorAll("[role=tab]")) {
      const on = tab.dataset.panel === panelId;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
    }
    for (const panel of main.querySelectorAll("[role=tabpanel]")) {
      panel.hidden = panel.id !== panelId;
    }
  }

  function showOffer(offer, full) {
    const qr = $("qr");
    $("no-offer").hidden = !full;
    if (offer === null) {
      offerId = null;
      qr.hidden = true;
      qr.removeAttribute("src");
      $("code").textContent = "\u00a0";
      $("expiry").textContent = full ? "\u00a0" : "Preparing a new code…";
      return;
    }
    if (offer.id !== offerId) {
      offerId = offer.id;
      qr.src = `/qr.svg?k=${encodeURIComponent(key)}&o=${encodeURIComponent(offer.id)}`;
      qr.hidden = false;
    }
    $("code").dataset.code = offer.code;
    codePausedUntil = Date.now() + (offer.code_paused_s || 0) * 1000;
    expiresAt = offer.expires_at * 1000;
    tickExpiry();
  }

  function tickExpiry() {
    if (offerId === null) return;
    const paused = Math.round((codePausedUntil - Date.now()) / 1000);
    if (paused > 0) {
      $("code").textContent = "\u00a0";
      $("expiry").textContent =
        `Code pairing paused for ${paused} s after wrong codes; scan the QR code.`;
      return;
    }
    $("code").textContent = $("code").dataset.code || "\u00a0";
    const left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
    $("expiry").textContent = `A new code appears in ${left} s. Each code works once.`;
  }

  function addSession(s, index) {
    const panelId = `session-${s.id}`;
    const tab = document.createElement("button");
    tab.className = "tab session-tab";
    tab.id = `tab-${s.id}`;
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-controls", panelId);
    tab.dataset.panel = panelId;
    tab.dataset.session = s.id;
    const panel = document.createElement("section");
    panel.className = "panel session-panel";
    panel.id = panelId;
    panel.setAttribute("role", "tabpanel");
    panel.setAttribute("aria-labelledby", tab.id);
    const frame = document.createElement("iframe");
    frame.className = "session-frame";
    frame.title = `Linked phone ${s.fingerprint || s.id}`;
    frame.referrerPolicy = "no-referrer";
    frame.src = s.page;
    panel.append(frame);
    tabs.append(tab);
    main.append(panel);
    sessions.set(s.id, { tab, panel });
    labelSession(s, index);
    select(panelId);
  }

  function labelSession(s, index) {
    const entry = sessions.get(s.id);
    entry.tab.textContent = s.name || `Medic ${index + 1}`; // the name given at `init`
    entry.tab.title = `Phone ${s.fingerprint || ""}`;
    entry.tab.classList.toggle("offline", !s.linked);
  }

  function removeSession(id) {
    const entry = sessions.get(id);
    if (!entry) return;
    // Removing the frame ends its document: nothing of the session stays in this page.
    entry.panel.remove();
    entry.tab.remove();
    sessions.delete(id);
    if (selected === `session-${id}`) select("pairing");
  }

  function showWiped(wiped) {
    // Content-free: which commands typed at a logged-out session never reached its phone.
    $("wiped").replaceChildren(
      ...(wiped || []).map((w) => {
        const item = document.createElement("li");
        item.className = "notice wiped-session";
        const who = w.name || `session ${w.id}`;
        const at = new Date(w.at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        const lost = w.count
          ? `${w.count} message${w.count === 1 ? "" : "s"} typed here never reached the phone (seq ${w.undelivered.join(", ")}${w.count > w.undelivered.length ? ", …" : ""}).`
          : "Every message typed here reached the phone.";
        item.textContent = `${who} logged out (${w.reason}) at ${at}. ${lost}`;
        item.dataset.undelivered = String(w.count);
        return item;
      }),
    );
  }

  function apply(state) {
    $("station-name").textContent = state.station;
    showWiped(state.wiped);
    document.title = `Field Station · ${state.station}`;
    showOffer(state.offer, state.full);
    const live = new Set(state.sessions.map((s) => s.id));
    for (const id of [...sessions.keys()]) if (!live.has(id)) removeSession(id);
    state.sessions.forEach((s, index) => {
      if (sessions.has(s.id)) labelSession(s, index);
      else addSession(s, index);
    });
  }

  function clearAll() {
    for (const id of [...sessions.keys()]) removeSession(id);
    showOffer(null, false);
  }

  function connect() {
    let query;
    if (key) query = `k=${encodeURIComponent(key)}`;
    else if (launch) query = `launch=${encodeURIComponent(launch)}`;
    else {
      $("screen-status").textContent = "This screen needs a link: on the kiosk, run `station open`.";
      return;
    }
    socket = new WebSocket(`ws://${location.host}/live?${query}`);
    let opened = false;
    socket.onopen = () => {
      opened = true;
      retryMs = 500;
      $("screen-status").textContent = "";
    };
    socket.onmessage = (event) => {
      const state = JSON.parse(event.data);
      if (state.type === "key") {
        key = state.key;
        launch = null; // spent
      } else if (state.type === "state") apply(state);
    };
    socket.onclose = (event) => {
      // The station stopped or restarted: every session it had is gone with it.
      clearAll();
      if (!key && !opened) {
        launch = null;
        $("screen-status").textContent =
          "This link was already used or has expired: on the kiosk, run `station open` for a new one.";
        return;
      }
      if (event.code === 4001) {
        key = null; // revoked: this page may not come back
        $("screen-status").textContent = "This screen was closed by the station.";
        return;
      }
      $("screen-status").textContent = "The station is not answering; retrying…";
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    };
  }

  tabs.addEventListener("click", (event) => {
    const tab = event.target.closest("[role=tab]");
    if (tab) select(tab.dataset.panel);
  });
  tabs.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
    const all = [...tabs.querySelectorAll("[role=tab]")];
    const at = all.findIndex((t) => t.dataset.panel === selected);
    const next = all[(at + (event.key === "ArrowRight" ? 1 : all.length - 1)) % all.length];
    select(next.dataset.panel);
    next.focus();
  });
  setInterval(tickExpiry, 1000);
  select("pairing");
  connect();
})();
