// The chat page: each message goes to /v1/chat/stream (server-sent events over a streamed
// fetch); the answer bubble fills as the events come: the agent's steps, the reply's words,
// then its list, item by item. The standing preferences are chips above the input; a click
// sends a typed removal. Text goes in with textContent only (never as HTML).
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const store = window.localStorage;

  function newSessionId() {
    const random = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Math.random()).slice(2);
    return "web-" + random;
  }
  let session = store.getItem("toolrec-session") || newSessionId();
  store.setItem("toolrec-session", session);
  $("api-key").value = store.getItem("toolrec-key") || "";

  function showSession() { $("session").textContent = "session " + session; }
  showSession();

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function scrolled() { $("log").scrollTop = $("log").scrollHeight; }

  function say(kind, text) {
    const div = element("div", "turn " + kind, text);
    $("log").appendChild(div);
    scrolled();
    return div;
  }

  function headers() {
    const key = $("api-key").value.trim();
    store.setItem("toolrec-key", key);
    const h = { "Content-Type": "application/json" };
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  // --- the answer bubble ---

  function answerBubble() {
    const bubble = say("bot", "");
    bubble.dataset.chunks = "0";
    const steps = element("div", "steps", "working...");
    const text = element("div", "text");
    const list = element("ol", "items");
    bubble.append(steps, text, list);
    return { bubble, steps, text, list, stepTexts: [] };
  }

  function addItem(answer, item) {
    const li = element("li");
    li.dataset.id = item.id;
    const meta = (item.year ? " (" + item.year + ")" : "") + (item.genres && item.genres.length ? " - " + item.genres.join(", ") : "");
    li.append(element("span", "title", item.title), element("span", "meta", meta), element("span", "reason", item.reason));
    answer.list.appendChild(li);
  }

  function onEvent(answer, name, data) {
    answer.bubble.dataset.chunks = String(Number(answer.bubble.dataset.chunks) + 1);
    if (name === "step") {
      answer.stepTexts.push(data.text);
      answer.steps.textContent = answer.stepTexts.join(" · ");
    } else if (name === "text") {
      answer.text.textContent += (answer.text.textContent ? " " : "") + data.text;
    } else if (name === "item") {
      addItem(answer, data);
    } else if (name === "done") {
      if (data.error && !answer.text.textContent) answer.text.textContent = data.error;
      if (data.preferences) showChips(data.preferences);
    } else if (name === "error") {
      answer.bubble.classList.add("error");
      answer.text.textContent = (data.error && data.error.message) || "error";
    }
    scrolled();
  }

  // Server-sent events from a streamed fetch (EventSource cannot POST): blocks split by a
  // blank line, each with an "event:" and a "data:" line.
  async function readEvents(response, handle) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trim());
        }
        if (data.length) handle(name, JSON.parse(data.join("\n")));
      }
    }
  }

  async function send(text) {
    const body = { session_id: session, message: text };
    const userId = $("user-id").value.trim();
    if (userId) body.user_id = userId;
    $("send").disabled = true;
    document.body.dataset.state = "waiting";
    const answer = answerBubble();
    try {
      const response = await fetch("v1/chat/stream", { method: "POST", headers: headers(), body: JSON.stringify(body) });
      if (!response.ok) {
        const data = await response.json().catch(() => ({}));
        onEvent(answer, "error", data.error ? data : { error: { message: "error " + response.status } });
        return;
      }
      await readEvents(response, (name, data) => onEvent(answer, name, data));
    } catch (err) {
      onEvent(answer, "error", { error: { message: "could not reach the server: " + err } });
    } finally {
      if (!answer.stepTexts.length) answer.steps.remove();
      $("send").disabled = false;
      document.body.dataset.state = "idle";
    }
  }

  // --- the standing preferences ---

  function showChips(preferences) {
    const bar = $("chips");
    bar.replaceChildren();
    for (const chip of preferences.chips || []) {
      const button = element("button", "chip", chip.label);
      button.type = "button";
      button.title = "remove this preference";
      button.setAttribute("aria-label", "remove " + chip.label);
      button.dataset.kind = chip.removal.kind;
      button.addEventListener("click", () => removeChip(chip, button));
      bar.appendChild(button);
    }
    $("preferences").hidden = !bar.children.length;
  }

  async function removeChip(chip, button) {
    button.disabled = true;
    document.body.dataset.state = "waiting";
    try {
      const url = "v1/sessions/" + encodeURIComponent(session) + "/preferences/remove";
      const response = await fetch(url, { method: "POST", headers: headers(), body: JSON.stringify(chip.removal) });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        say("bot error", (data.error && data.error.message) || ("error " + response.status));
        button.disabled = false;
        return;
      }
      say("note", "removed: " + chip.label);
      showChips(data);
    } catch (err) {
      say("bot error", "could not reach the server: " + err);
      button.disabled = false;
    } finally {
      document.body.dataset.state = "idle";
    }
  }

  $("chat").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value.trim();
    if (!text) return;
    $("message").value = "";
    say("me", text);
    send(text);
  });

  $("new-session").addEventListener("click", () => {
    session = newSessionId();
    store.setItem("toolrec-session", session);
    showSession();
    $("log").replaceChildren();
    showChips({ chips: [] });
  });
  // a session kept from an earlier visit: show the preferences it still holds
  fetch("v1/sessions/" + encodeURIComponent(session) + "/preferences", { headers: headers() })
    .then((response) => (response.ok ? response.json() : null))
    .then((preferences) => { if (preferences) showChips(preferences); })
    .catch(() => {});
  document.body.dataset.state = "idle";
})();
