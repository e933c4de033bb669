// The share page: asks /v1/ask with the token from the link's fragment and shows the answer
// as it streams, then its sources. Text is only ever set as text, never as markup.
"use strict";

(function () {
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  // The token stays in memory only; the address bar forgets it.
  history.replaceState(null, "", location.pathname);
  const form = document.getElementById("ask");
  const question = document.getElementById("question");
  const answers = document.getElementById("answers");
  const status = document.querySelector("[data-testid=share-status]");
  // One conversation per visit, so the twin sees the earlier questions of this page only.
  const conversation = "share-" + Math.random().toString(36).slice(2, 12);

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  if (!token) {
    status.textContent = "This link has no token: ask its owner for a new one.";
    status.classList.add("error");
    form.hidden = true;
  }

  function showSources(turn, message) {
    const list = element("ol", "sources");
    list.dataset.testid = "share-sources";
    for (const c of message.citations) {
      const place = c.location ? ", " + c.location : "";
      const item = element("li", "", c.deleted ? "source deleted" : c.source_title + place);
      item.value = c.number;
      list.appendChild(item);
    }
    if (message.citations.length) turn.appendChild(list);
  }

  async function ask(text) {
    const turn = element("div", "turn");
    turn.appendChild(element("p", "question", text));
    const answer = element("p", "answer");
    answer.dataset.testid = "share-answer";
    turn.appendChild(answer);
    answers.appendChild(turn);
    const body = { question: text, conversation };
    const response = await fetch("/v1/ask", {
      method: "POST",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const failure = await response.json().catch(() => ({ error: { message: response.statusText } }));
      answer.textContent = failure.error.message;
      answer.classList.add("error");
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (!data) continue;
        const payload = JSON.parse(data);
        if (event === "token") answer.textContent += payload.text;
        else if (event === "answer") {
          answer.textContent = payload.message.content;
          showSources(turn, payload.message);
          turn.dataset.done = "true";
        } else if (event === "error") {
          answer.textContent = payload.error.message;
          answer.classList.add("error");
        }
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (!text) return;
    question.value = "";
    ask(text).catch((e) => {
      status.textContent = "The twin could not be reached: " + e.message;
      status.classList.add("error");
    });
  });
})();
