// The chat page: posts each message to /v1/chat/completions with the session id as `user`,
// shows the reply and the list. Text goes in with textContent only (never as HTML).
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

  function say(kind, text) {
    const div = document.createElement("div");
    div.className = "turn " + kind;
    div.textContent = text;
    $("log").appendChild(div);
    $("log").scrollTop = $("log").scrollHeight;
  }

  function showItems(result) {
    const list = $("results");
    list.replaceChildren();
    for (const item of result.items || []) {
      const li = document.createElement("li");
      li.dataset.id = item.id;
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = item.title;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = (item.year ? " (" + item.year + ")" : "") + (item.genres && item.genres.length ? " - " + item.genres.join(", ") : "");
      const reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = item.reason;
      li.append(title, meta, reason);
      list.appendChild(li);
    }
    const c = result.constraints || {};
    const parts = [];
    if (c.genres && c.genres.length) parts.push(c.genres.join(" or "));
    if (c.exclude_genres && c.exclude_genres.length) parts.push("no " + c.exclude_genres.join(", no "));
    if (c.year_from || c.year_to) parts.push((c.year_from || "...") + "-" + (c.year_to || "..."));
    if (c.query) parts.push('"' + c.query + '"');
    $("constraints").textContent = parts.length ? "Preferences: " + parts.join("; ") : "";
  }

  async function send(text) {
    const key = $("api-key").value.trim();
    store.setItem("toolrec-key", key);
    const headers = { "Content-Type": "application/json", "X-Session-Id": session };
    if (key) headers["Authorization"] = "Bearer " + key;
    const body = { model: "toolrec", messages: [{ role: "user", content: text }], user: session };
    const userId = $("user-id").value.trim();
    if (userId) body.toolrec_user_id = userId;
    $("send").disabled = true;
    document.body.dataset.state = "waiting";
    try {
      const response = await fetch("v1/chat/completions", { method: "POST", headers, body: JSON.stringify(body) });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        say("bot error", (data.error && data.error.message) || ("error " + response.status));
        return;
      }
      say("bot", data.choices[0].message.content);
      showItems(data.toolrec || {});
    } catch (err) {
      say("bot error", "could not reach the server: " + err);
    } finally {
      $("send").disabled = false;
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
    $("results").replaceChildren();
    $("constraints").textContent = "";
  });
  document.body.dataset.state = "idle";
})();
