// verticalize console: the playground. Forms of class "vz-try" post with fetch; an HTML
// answer (a prediction, escaped by the server) goes into the form's result box, a
// server-sent event stream (a chat answer) is read token by token into its chat log.
(function () {
  "use strict";
  const states = new WeakMap();

  function stateOf(form) {
    if (!states.has(form)) states.set(form, { messages: [], controller: null });
    return states.get(form);
  }

  function showError(box, message) {
    if (!box) return;
    box.textContent = "";
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = message;
    box.appendChild(p);
  }

  function bubble(log, role, text) {
    const li = document.createElement("li");
    li.className = "msg " + role;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Model";
    const body = document.createElement("div");
    body.className = "content";
    body.textContent = text;
    li.append(who, body);
    log.appendChild(li);
    return body;
  }

  async function readEvents(response, onEvent) {
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
        for (const line of block.split("\n")) {
          if (line.startsWith("data:")) onEvent(JSON.parse(line.slice(5)));
        }
      }
    }
  }

  function reset(form) {
    const state = stateOf(form);
    state.messages = [];
    const log = form.dataset.log && document.getElementById(form.dataset.log);
    if (log) log.textContent = "";
    const result = document.getElementById(form.dataset.result);
    if (result) result.textContent = "";
  }

  async function submit(form) {
    const state = stateOf(form);
    if (state.controller) return;
    const result = document.getElementById(form.dataset.result);
    const log = form.dataset.log && document.getElementById(form.dataset.log);
    const send = form.querySelector("button[type=submit]");
    const stop = form.querySelector("[data-stop]");
    const busy = form.querySelector(".busy");
    const input = form.querySelector("[name=text]");
    const data = new FormData(form);
    const text = String(data.get("text") || "");
    data.set("messages", JSON.stringify(state.messages));
    state.controller = new AbortController();
    send.disabled = true;
    if (stop) stop.disabled = false;
    if (busy) busy.textContent = "Working… (the first request loads the model)";
    let streamed = null;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: data,
        headers: { "X-CSRF-Token": document.body.dataset.csrf, Accept: "text/event-stream, text/plain, */*" },
        signal: state.controller.signal,
      });
      const type = response.headers.get("content-type") || "";
      if (!response.ok) {
        const message = type.startsWith("text/plain") ? await response.text() : response.status + ": " + response.statusText;
        showError(result, message);
      } else if (type.startsWith("text/event-stream") && log) {
        if (result) result.textContent = "";
        bubble(log, "user", text);
        const out = bubble(log, "assistant", "");
        streamed = { answer: "" };
        input.value = "";
        await readEvents(response, (event) => {
          if (event.delta) { streamed.answer += event.delta; out.textContent = streamed.answer; }
          if (event.error) showError(result, event.error);
          if (event.done && event.finish_reason === "length") out.parentElement.dataset.finish = "length";
        });
      } else {
        result.innerHTML = await response.text();
      }
    } catch (e) {
      if (e.name !== "AbortError") showError(result, "The request failed: " + e.message);
    } finally {
      if (streamed) state.messages.push({ role: "user", content: text }, { role: "assistant", content: streamed.answer });
      state.controller = null;
      send.disabled = false;
      if (stop) stop.disabled = true;
      if (busy) busy.textContent = "";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const form of document.querySelectorAll("form.vz-try")) {
      form.addEventListener("submit", (e) => { e.preventDefault(); submit(form); });
      const stop = form.querySelector("[data-stop]");
      if (stop) stop.addEventListener("click", () => { const c = stateOf(form).controller; if (c) c.abort(); });
      const clear = form.querySelector("[data-clear]");
      if (clear) clear.addEventListener("click", () => reset(form));
      for (const field of form.querySelectorAll("[data-resets]")) field.addEventListener("change", () => reset(form));
      const input = form.querySelector("textarea[name=text]");
      if (input) input.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
      });
    }
  });
})();
