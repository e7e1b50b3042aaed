// The webhookd Playground: renders /api/v1/manifest and sends the person's requests with fetch.
//
// Safe by construction: every piece of data reaches the DOM through textContent or element
// properties, never parsed as markup; the token lives in `state.token` only, and in sessionStorage
// only when "Remember in this tab" is ticked; it never goes into a URL.
(function () {
  "use strict";

  const MANIFEST_URL = "/api/v1/manifest";
  const CONFIG_URL = "/playground/config";
  const DEV_TOKEN_URL = "/playground/dev-token";
  const LOG_URL = "/api/v1/integration/delivery-log";
  const DELIVERIES_URL = "/api/v1/integration/deliveries";
  const WEBHOOKS_URL = "/api/v1/integration/webhooks";
  const WAITING_STATUSES = ["held", "skipped"];
  const TOKEN_KEY = "webhookd.playground.token";
  const MAX_LOG_ROWS = 500;
  const MASK = "••••••••";

  const state = {
    manifest: null,
    resource: null,
    operation: null,
    token: "",
    lastIds: {}, // resource name → the id of the last resource a response showed
    inFlight: null, // AbortController of the console's current request
    log: null, // AbortController of the delivery log stream
  };

  // ------------------------------------------------------------------------------------ DOM

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  // -------------------------------------------------------------------------------- loading

  async function start() {
    restoreToken();
    bindTokenBox();
    bindLogPanel();
    let manifest;
    try {
      const response = await fetch(MANIFEST_URL, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`.trim());
      manifest = await response.json();
    } catch (error) {
      $("manifest-status").textContent = `Could not load the manifest: ${error.message}`;
      $("manifest-status").classList.add("error-text");
      return;
    }
    state.manifest = manifest;
    show($("manifest-status"), false);
    show($("token-box"), true);
    show($("log"), true);
    renderNav();
    const [resourceName, opName] = fragment().split(".");
    selectResource(resourceName, opName);
    loadConfig();
  }

  // `#Resource.operation`, as selectOperation writes it. Anyone can send a link: a fragment that does not
  // decode (`#%`) opens the first resource rather than stopping the page.
  function fragment() {
    try {
      return decodeURIComponent(location.hash.slice(1));
    } catch (_) {
      return "";
    }
  }

  async function loadConfig() {
    try {
      const response = await fetch(CONFIG_URL, { cache: "no-store" });
      if (!response.ok) return;
      const config = await response.json();
      show($("dev-token"), Boolean(config.dev_token));
    } catch (_) {
      // The console works without it: only the dev token button stays hidden.
    }
  }

  // ------------------------------------------------------------------------------- resource

  function renderNav() {
    const nav = $("resource-nav");
    clear(nav);
    for (const resource of state.manifest.resources) {
      nav.append(
        el("button", {
          type: "button",
          class: "nav-item",
          text: resource.name,
          dataset: { resource: resource.name },
          onclick: () => selectResource(resource.name),
        }),
      );
    }
  }

  function selectResource(name, opName) {
    const resources = state.manifest.resources;
    const resource = resources.find((r) => r.name === name) || resources[0];
    if (!resource) return;
    state.resource = resource;
    for (const button of $("resource-nav").children) {
      button.setAttribute("aria-current", button.dataset.resource === resource.name ? "page" : "false");
    }
    $("resource-name").textContent = resource.name;
    $("resource-path").textContent = resource.path;
    $("resource-description").textContent = resource.description;
    show($("resource-head"), true);
    renderSchema(resource);
    renderTabs(resource);
    const operation = resource.operations.find((o) => o.name === opName) || resource.operations[0];
    if (operation) selectOperation(operation);
  }

  function renderSchema(resource) {
    const body = $("schema-table").tBodies[0];
    clear(body);
    for (const field of resource.fields) {
      const nameCell = el(
        "td",
        { class: "field" },
        el("code", { class: "field-name", text: field.name }),
        field.required ? el("span", { class: "req", title: "required", text: "*" }) : null,
      );
      const typeCell = el("td", { class: "type" }, el("span", { class: `type-word type-${field.type}`, text: field.type }));
      if (field.type === "enum" && field.values) {
        // "frontend | backend | …" as the seed writes it; each "value |" stays on one line.
        const values = el("span", { class: "values" });
        field.values.forEach((value, i) => {
          if (i) values.append(" ");
          values.append(el("span", { class: "value", text: i < field.values.length - 1 ? `${value} |` : value }));
        });
        typeCell.append(values);
      }
      const notesCell = el("td", { class: "notes" }, el("span", { class: "note", text: field.notes }));
      if (field.output_only) notesCell.append(el("span", { class: "tag", text: "output only" }));
      if (field.immutable) notesCell.append(el("span", { class: "tag", text: "immutable" }));
      if (field.input_only) notesCell.append(el("span", { class: "tag", text: "input only" }));
      body.append(el("tr", { dataset: { field: field.name } }, nameCell, typeCell, notesCell));
    }
    show($("schema"), true);
  }

  function renderTabs(resource) {
    const tabs = $("op-tabs");
    clear(tabs);
    for (const operation of resource.operations) {
      tabs.append(
        el("button", {
          type: "button",
          role: "tab",
          class: "tab",
          id: `tab-${operation.name}`,
          "aria-selected": "false",
          "aria-controls": "op-panel",
          title: `${operation.method} ${operation.path}`,
          text: operation.name,
          dataset: { op: operation.name },
          onclick: () => selectOperation(operation),
        }),
      );
    }
  }

  // ------------------------------------------------------------------------------ operation

  function selectOperation(operation) {
    state.operation = operation;
    for (const tab of $("op-tabs").children) {
      const selected = tab.dataset.op === operation.name;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
    $("op-panel").setAttribute("aria-labelledby", `tab-${operation.name}`);
    const method = $("op-method");
    method.textContent = operation.method;
    method.className = `method method-${operation.method.toLowerCase()}`;
    $("op-path").textContent = operation.path;
    $("op-description").textContent = operation.description;
    renderForm(operation);
    show($("op-panel"), true);
    history.replaceState(null, "", `#${state.resource.name}.${operation.name}`);
  }

  function inputFor(param, prefix) {
    const id = `${prefix}-${param.name}`;
    const attrs = { id, name: param.name, autocomplete: "off", spellcheck: "false" };
    if (param.type === "boolean") {
      return el("select", attrs, el("option", { value: "", text: "(any)" }), el("option", { value: "true", text: "true" }), el("option", { value: "false", text: "false" }));
    }
    if (param.values && !param.repeated) {
      return el("select", attrs, el("option", { value: "", text: "(any)" }), ...param.values.map((v) => el("option", { value: v, text: v })));
    }
    if (param.type === "number") return el("input", { ...attrs, type: "number", inputmode: "numeric" });
    if (param.secret) return el("input", { ...attrs, type: "password", placeholder: "(optional)" });
    let placeholder = "";
    if (param.type === "date-time") placeholder = "2025-01-31T12:00:00Z";
    if (param.repeated) placeholder = "comma-separated";
    return el("input", { ...attrs, type: "text", placeholder });
  }

  function fieldRow(param, prefix, required) {
    const control = inputFor(param, prefix);
    const label = el("label", { for: control.id, class: "label" }, el("code", { text: param.name }), required ? el("span", { class: "req", text: "*" }) : null);
    const hint = param.notes ? el("span", { class: "hint", text: param.notes }) : null;
    return el("div", { class: "form-row" }, label, control, hint);
  }

  function renderForm(operation) {
    const form = $("op-form");
    clear(form);
    if (operation.path_params.length) {
      const group = el("fieldset", { class: "group" }, el("legend", { text: "Path" }));
      for (const param of operation.path_params) {
        const row = fieldRow(param, "path", true);
        const input = row.querySelector("input");
        input.required = true;
        input.value = state.lastIds[state.resource.name] || "";
        group.append(row);
      }
      form.append(group);
    }
    if (operation.query_params.length) {
      const group = el("details", { class: "group", open: operation.name !== "list" || undefined }, el("summary", { text: `Query (${operation.query_params.length})` }));
      for (const param of operation.query_params) group.append(fieldRow(param, "query", false));
      form.append(group);
    }
    if (operation.headers.length) {
      const group = el("fieldset", { class: "group" }, el("legend", { text: "Headers" }));
      for (const header of operation.headers) {
        group.append(fieldRow({ name: header.name, type: "string", notes: header.notes, secret: header.secret }, "header", false));
      }
      form.append(group);
    }
    if (operation.body) {
      const example = operation.example === undefined ? {} : operation.example;
      const textarea = el("textarea", { id: "body", name: "body", rows: 8, spellcheck: "false", autocomplete: "off", class: "code-input" });
      textarea.value = JSON.stringify(example, null, 2);
      const where = operation.body === "*" ? "the request" : `the request's ${operation.body}`;
      form.append(
        el(
          "div",
          { class: "group form-row" },
          el("label", { for: "body", class: "label" }, "Body ", el("span", { class: "muted", text: `(JSON: ${where})` })),
          textarea,
        ),
      );
    }
    const send = el("button", { type: "submit", class: "button primary", id: "send", text: `Send ${operation.method}` });
    const stop = el("button", { type: "button", class: "button", id: "stop", text: "Stop", disabled: true, onclick: () => state.inFlight && state.inFlight.abort() });
    form.append(el("div", { class: "actions" }, send, operation.streaming ? stop : null, el("span", { id: "form-error", class: "error-text", role: "alert" })));
    form.onsubmit = (event) => {
      event.preventDefault();
      sendOperation(operation, form);
    };
  }

  // --------------------------------------------------------------------------------- request

  function buildRequest(operation, form) {
    let path = operation.path;
    for (const param of operation.path_params) {
      const value = form.elements[param.name].value.trim();
      if (!value) throw new Error(`${param.name} is required`);
      path = path.replace(`{${param.name}}`, encodeURIComponent(value));
    }
    const query = new URLSearchParams();
    for (const param of operation.query_params) {
      const value = form.elements[param.name].value.trim();
      if (!value) continue;
      const values = param.repeated ? value.split(",").map((v) => v.trim()).filter(Boolean) : [value];
      for (const v of values) query.append(param.name, v);
    }
    const headers = { Accept: "application/json" };
    const secretHeaders = ["Authorization"];
    for (const header of operation.headers) {
      const value = form.elements[header.name].value.trim();
      if (value) headers[header.name] = value;
      if (header.secret) secretHeaders.push(header.name);
    }
    let body;
    if (operation.body) {
      const text = form.elements.body.value.trim();
      if (text) {
        try {
          JSON.parse(text);
        } catch (error) {
          throw new Error(`the body is not valid JSON: ${error.message}`);
        }
        body = text;
        headers["Content-Type"] = "application/json";
      }
    }
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const search = query.toString();
    return { method: operation.method, url: path + (search ? `?${search}` : ""), headers, body, secretHeaders };
  }

  function describeRequest(request) {
    const lines = [`${request.method} ${request.url}`];
    for (const [name, value] of Object.entries(request.headers)) {
      const shown = name === "Authorization" ? `Bearer ${MASK}` : request.secretHeaders.includes(name) ? MASK : value;
      lines.push(`${name}: ${shown}`);
    }
    if (!request.headers.Authorization) lines.push("(no Authorization header: paste a token above)");
    if (request.body !== undefined) lines.push("", prettyJson(request.body));
    return lines.join("\n");
  }

  async function sendOperation(operation, form) {
    const error = $("form-error");
    error.textContent = "";
    let request;
    try {
      request = buildRequest(operation, form);
    } catch (problem) {
      error.textContent = problem.message;
      return;
    }
    if (state.inFlight) state.inFlight.abort();
    const controller = new AbortController();
    state.inFlight = controller;
    $("request-view").textContent = describeRequest(request);
    setResponse(null);
    show($("exchange"), true);
    const send = $("send");
    const stop = $("stop");
    send.disabled = true;
    if (stop) stop.disabled = false;
    try {
      const response = await fetch(request.url, {
        method: request.method,
        headers: request.headers,
        body: request.body,
        signal: controller.signal,
        cache: "no-store",
        credentials: "omit",
        redirect: "error",
      });
      if (operation.streaming && response.ok && response.body) {
        await readStream(response, controller);
      } else {
        setResponse(response, await response.text());
      }
    } catch (problem) {
      if (problem.name !== "AbortError") setNetworkError(problem);
    } finally {
      if (state.inFlight === controller) state.inFlight = null;
      send.disabled = false;
      if (stop) stop.disabled = true;
    }
  }

  async function readStream(response, controller) {
    setResponse(response, "");
    const target = $("response-body");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        target.textContent += value;
      }
    } catch (problem) {
      if (!controller.signal.aborted) throw problem;
    }
  }

  // -------------------------------------------------------------------------------- response

  function prettyJson(text) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch (_) {
      return text;
    }
  }

  function setResponse(response, text) {
    const pill = $("response-status");
    const violations = $("response-violations");
    clear(violations);
    show(violations, false);
    if (!response) {
      pill.textContent = "sending…";
      pill.dataset.kind = "pending";
      $("response-headers").textContent = "";
      $("response-body").textContent = "";
      return;
    }
    pill.textContent = `${response.status} ${response.statusText}`.trim();
    pill.dataset.kind = response.ok ? "ok" : response.status >= 500 ? "server" : "client";
    const shown = ["content-type", "etag", "retry-after", "www-authenticate", "x-request-id"];
    $("response-headers").textContent = shown
      .filter((name) => response.headers.has(name))
      .map((name) => `${name}: ${response.headers.get(name)}`)
      .join("\n");
    $("response-body").textContent = prettyJson(text);
    let payload = null;
    try {
      payload = JSON.parse(text);
    } catch (_) {
      payload = null;
    }
    if (!response.ok) showViolations(payload);
    else rememberId(payload);
  }

  function showViolations(payload) {
    const error = payload && payload.error;
    if (!error) return;
    const list = $("response-violations");
    list.append(el("li", { class: "violation-head" }, el("strong", { text: error.status || String(error.code) }), ` ${error.message || ""}`));
    for (const detail of error.details || []) {
      for (const violation of detail.fieldViolations || detail.field_violations || []) {
        list.append(el("li", {}, el("code", { text: violation.field || "(request)" }), ` ${violation.description || ""}`));
      }
    }
    show(list, true);
  }

  function rememberId(payload) {
    if (!payload || typeof payload !== "object") return;
    const key = state.resource.name.toLowerCase();
    const resource = payload[key] && typeof payload[key] === "object" ? payload[key] : payload;
    if (typeof resource.id === "string" && resource.id) state.lastIds[state.resource.name] = resource.id;
  }

  function setNetworkError(problem) {
    const pill = $("response-status");
    pill.textContent = "network error";
    pill.dataset.kind = "server";
    $("response-headers").textContent = "";
    $("response-body").textContent = problem.message;
  }

  // ----------------------------------------------------------------------------------- token

  // What people paste is often the header's value ("Bearer eyJ…") or a token wrapped by a terminal;
  // a JWT holds no whitespace, so the token is what is left without the scheme and the whitespace.
  function tokenOf(value) {
    return value.trim().replace(/^bearer\s+/i, "").replace(/\s+/g, "");
  }

  function setToken(value, { fromInput = false } = {}) {
    state.token = tokenOf(value);
    if (!fromInput) $("token").value = state.token;
    if ($("remember").checked) {
      if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
      else sessionStorage.removeItem(TOKEN_KEY);
    }
    $("token-info").textContent = describeToken(state.token);
  }

  function describeToken(token) {
    if (!token) return "No token: calls will be 401.";
    const parts = token.split(".");
    if (parts.length !== 3) return "Not a JWT: sent as it is.";
    try {
      const binary = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
      const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
      const bits = [];
      if (claims.tenant_id) bits.push(`tenant ${claims.tenant_id}`);
      if (claims.sub) bits.push(`sub ${claims.sub}`);
      if (claims.app_id) bits.push(`app ${claims.app_id}`);
      if (typeof claims.exp === "number") {
        const expires = new Date(claims.exp * 1000);
        bits.push(expires < new Date() ? "expired" : `expires ${expires.toLocaleString()}`);
      }
      return bits.join(" · ");
    } catch (_) {
      return "Not a readable JWT: sent as it is.";
    }
  }

  function restoreToken() {
    let saved = null;
    try {
      saved = sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      saved = null;
    }
    if (saved) {
      $("remember").checked = true;
      setToken(saved);
    } else {
      setToken("");
    }
  }

  function bindTokenBox() {
    const input = $("token");
    input.addEventListener("input", () => setToken(input.value, { fromInput: true }));
    $("token-toggle").addEventListener("click", (event) => {
      const reveal = input.type === "password";
      input.type = reveal ? "text" : "password";
      event.currentTarget.textContent = reveal ? "Hide" : "Show";
      event.currentTarget.setAttribute("aria-pressed", String(reveal));
    });
    $("remember").addEventListener("change", (event) => {
      if (event.currentTarget.checked && state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
      if (!event.currentTarget.checked) sessionStorage.removeItem(TOKEN_KEY);
    });
    $("dev-token").addEventListener("click", async () => {
      try {
        const response = await fetch(DEV_TOKEN_URL, { cache: "no-store", credentials: "omit" });
        if (!response.ok) throw new Error(`${response.status} ${response.statusText}`.trim());
        setToken((await response.json()).token || "");
      } catch (problem) {
        $("token-info").textContent = `No dev token: ${problem.message}`;
      }
    });
  }

  // ------------------------------------------------------------------------------ delivery log

  function setLogState(kind, text) {
    const pill = $("log-state");
    pill.dataset.state = kind;
    pill.textContent = text;
    const connected = kind === "connecting" || kind === "live";
    $("log-connect").disabled = connected;
    $("log-disconnect").disabled = !connected;
    $("log-webhook").disabled = connected;
  }

  function showLogError(text) {
    const node = $("log-error");
    node.textContent = text;
    show(node, Boolean(text));
  }

  function bindLogPanel() {
    $("log-form").addEventListener("submit", (event) => {
      event.preventDefault();
      connectLog();
    });
    $("log-disconnect").addEventListener("click", () => {
      if (state.log) state.log.abort();
    });
    $("log-clear").addEventListener("click", () => {
      const body = $("log-entries");
      clear(body);
      body.append(el("tr", { class: "empty" }, el("td", { colspan: 8, text: "No attempts yet. Connect, then publish an event." })));
    });
    $("held-refresh").addEventListener("click", () => loadHeld());
    $("test-send").addEventListener("click", () => sendTestEvent());
  }

  function authorized() {
    return { Authorization: `Bearer ${state.token}` };
  }

  // Held and skipped deliveries of the webhook in the log form (or of every webhook): ListDeliveries by status.
  async function loadHeld() {
    if (!state.token) {
      showLogError("Paste a token first: the log shows only your tenant's deliveries.");
      return;
    }
    const webhookId = $("log-webhook").value.trim();
    const found = [];
    try {
      for (const status of WAITING_STATUSES) {
        const query = new URLSearchParams({ status, page_size: "100" });
        if (webhookId) query.set("webhook_id", webhookId);
        const response = await fetch(`${DELIVERIES_URL}?${query}`, { headers: authorized(), cache: "no-store", credentials: "omit" });
        const text = await response.text();
        if (!response.ok) {
          showLogError(`${response.status} ${response.statusText}\n${prettyJson(text)}`.trim());
          return;
        }
        found.push(...(JSON.parse(text).deliveries || []));
      }
    } catch (problem) {
      showLogError(problem.message);
      return;
    }
    const body = $("held-entries");
    clear(body);
    if (!found.length) body.append(el("tr", { class: "empty" }, el("td", { colspan: 5, text: "Nothing held or skipped." })));
    found.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    for (const delivery of found) {
      const when = delivery.created_at ? new Date(delivery.created_at) : null;
      body.append(
        el(
          "tr",
          { class: "held", dataset: { status: delivery.status || "", delivery: delivery.id || "" } },
          el("td", { class: "time", title: delivery.created_at || "", text: when ? when.toLocaleTimeString() : "" }),
          el("td", {}, el("span", { class: `outcome outcome-${delivery.status}`, text: delivery.status })),
          el("td", { class: "event-type" }, el("code", { text: delivery.event_type || "" })),
          el("td", { class: "wide" }, el("code", { text: delivery.webhook_id || "" })),
          el("td", { class: "wide" }, el("code", { text: delivery.id || "" })),
        ),
      );
    }
  }

  // SendTestEvent for the webhook in the log form: the receiver's answer shows at once.
  async function sendTestEvent() {
    showLogError("");
    const webhookId = $("log-webhook").value.trim();
    if (!state.token || !webhookId) {
      showLogError("A token and a webhook id are needed to send a test event.");
      return;
    }
    const result = $("test-result");
    result.dataset.kind = "pending";
    result.textContent = "Sending a test event…";
    show(result, true);
    try {
      const response = await fetch(`${WEBHOOKS_URL}/${encodeURIComponent(webhookId)}:sendTestEvent`, {
        method: "POST",
        headers: { ...authorized(), "Content-Type": "application/json" },
        body: "{}",
        cache: "no-store",
        credentials: "omit",
      });
      const text = await response.text();
      const payload = JSON.parse(text);
      if (!response.ok) {
        result.dataset.kind = "bad";
        result.textContent = `${response.status}: ${(payload.error && payload.error.message) || text}`;
        return;
      }
      const parts = [payload.outcome, payload.http_status ? `HTTP ${payload.http_status}` : "no response", `${payload.latency_ms || 0} ms`];
      if (payload.error) parts.push(payload.error);
      if (payload.response_excerpt) parts.push(`“${payload.response_excerpt.slice(0, 200)}”`);
      result.dataset.kind = payload.outcome === "succeeded" ? "ok" : "bad";
      result.dataset.outcome = payload.outcome || "";
      result.textContent = `Test event ${payload.event_id}: ${parts.join(" · ")}`;
    } catch (problem) {
      result.dataset.kind = "bad";
      result.textContent = problem.message;
    }
  }

  async function connectLog() {
    showLogError("");
    if (!state.token) {
      showLogError("Paste a token first: the log shows only your tenant's deliveries.");
      return;
    }
    const query = new URLSearchParams({ follow: "true" });
    const webhookId = $("log-webhook").value.trim();
    if (webhookId) query.set("webhook_id", webhookId);
    const controller = new AbortController();
    state.log = controller;
    setLogState("connecting", "Connecting…");
    try {
      const response = await fetch(`${LOG_URL}?${query}`, {
        headers: { Accept: "text/event-stream", Authorization: `Bearer ${state.token}` },
        signal: controller.signal,
        cache: "no-store",
        credentials: "omit",
      });
      if (!response.ok || !response.body) {
        showLogError(`${response.status} ${response.statusText}\n${prettyJson(await response.text())}`.trim());
        setLogState("closed", "Not connected");
        return;
      }
      setLogState("live", webhookId ? "Live · one webhook" : "Live · all webhooks");
      loadHeld();
      await readEvents(response.body);
      setLogState("closed", "Stream ended");
    } catch (problem) {
      if (problem.name === "AbortError") setLogState("idle", "Disconnected");
      else {
        showLogError(problem.message);
        setLogState("closed", "Connection lost");
      }
    } finally {
      if (state.log === controller) state.log = null;
    }
  }

  async function readEvents(stream) {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        handleEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  function handleEvent(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue; // comments are keep-alives
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    let payload;
    try {
      payload = JSON.parse(data.join("\n"));
    } catch (_) {
      return;
    }
    if (event === "error") {
      const error = payload.error || {};
      showLogError(`${error.status || "ERROR"}: ${error.message || ""}`);
      return;
    }
    if (payload.entry) addLogEntry(payload.entry);
  }

  function addLogEntry(entry) {
    const body = $("log-entries");
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    const when = entry.occurred_at ? new Date(entry.occurred_at) : null;
    // A lifecycle entry (webhook.paused, …) has no outcome: its kind stands there, its reason as the error.
    const lifecycle = Boolean(entry.kind) && entry.kind !== "attempt";
    const outcome = lifecycle ? entry.kind : entry.outcome || "";
    const row = el(
      "tr",
      { class: lifecycle ? "entry lifecycle" : "entry", dataset: { outcome, kind: entry.kind || "attempt", cursor: entry.cursor || "" } },
      el("td", { class: "time", title: entry.occurred_at || "", text: when ? when.toLocaleTimeString() : "" }),
      el("td", {}, el("span", { class: `outcome outcome-${outcome.replace(/[^a-z_]/g, "")}`, text: outcome })),
      el("td", { class: "num http-status", text: entry.http_status ? String(entry.http_status) : "—" }),
      el("td", { class: "event-type" }, el("code", { text: entry.event_type || "" })),
      el("td", { class: "num", text: `${entry.latency_ms || 0} ms` }),
      el("td", { class: "num attempt", text: String(entry.attempt || "") }),
      el("td", { class: "wide" }, el("code", { text: entry.webhook_id || "" })),
      el("td", { class: "wide error-cell", text: (lifecycle ? entry.reason : entry.error) || "" }),
    );
    body.prepend(row);
    // A pause holds what is published next, a resume releases it: the held list follows.
    if (lifecycle) loadHeld();
    while (body.rows.length > MAX_LOG_ROWS) body.deleteRow(body.rows.length - 1);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
