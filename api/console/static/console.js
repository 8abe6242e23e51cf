// The facequeue console: hash-routed views over the v1 API, filled from the <template>s of the page.
// API data reaches the DOM only as textContent or properties, never as HTML.

const KEY = "facequeue.apiKey"; // sessionStorage: gone with the tab, never sent as a cookie
const POLL_MS = 2000;
const PAGE_SIZE = 25;
const PROGRESS_LOOKUPS = 10; // list rows carry no progress: ask for at most this many running tasks per poll
const TIMEOUT_MS = 15000;
const UPLOAD_TIMEOUT_MS = 120000;
const LIVE = new Set(["queued", "processing", "running"]);

const view = document.getElementById("view");
const notice = document.getElementById("notice");
let leaveView = () => {};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function request(path, { method = "GET", body, timeout = TIMEOUT_MS } = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return fetch(path, { method, headers, body: payload, signal: AbortSignal.timeout(timeout) });
}

async function api(path, options) {
  const response = await answered(path, options);
  return response.status === 204 ? null : response.json();
}

// A JSONL answer (a batch's persons), each line parsed.
async function apiLines(path) {
  const text = await (await answered(path)).text();
  return text.split("\n").filter((line) => line).map((line) => JSON.parse(line));
}

async function answered(path, options) {
  const response = await request(path, options);
  if (response.status === 401) {
    signOut("The API refused this key: sign in again.");
  }
  if (!response.ok) {
    const problem = (await response.json().catch(() => null))?.error;
    throw new ApiError(response.status, problem?.code ?? `http_${response.status}`,
      problem?.message ?? `The API answered ${response.status} ${response.statusText}`);
  }
  return response;
}

// An image the API serves behind the key: <img> can't send the header, so fetch it into a blob URL.
// null when this server has no such picture (404, or 501 where previews are not built).
async function apiImage(path) {
  const response = await request(path);
  if (response.status === 404 || response.status === 501) return null;
  if (!response.ok) throw new ApiError(response.status, `http_${response.status}`, "The picture could not be loaded");
  return URL.createObjectURL(await response.blob());
}

// A task's event stream (GET v1/detect/{id}/events), read with fetch since EventSource cannot send the key.
// Calls onEvent(name, data) for each event; true once the final one came, false when the server has no
// stream, it broke or it was aborted (the caller then polls).
async function followEvents(path, onEvent, signal) {
  try {
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, Accept: "text/event-stream" };
    const response = await fetch(path, { headers, signal });
    if (!response.ok || !response.headers.get("content-type")?.startsWith("text/event-stream")) return false;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let name = "message";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      const lines = (buffer + value).split("\n");
      buffer = lines.pop();
      for (const line of lines.map((text) => text.replace(/\r$/, ""))) {
        if (line === "") {
          if (data.length) onEvent(name, JSON.parse(data.join("\n")));
          if (data.length && name === "final") {
            reader.cancel();
            return true;
          }
          [name, data] = ["message", []];
        } else if (line.startsWith("event:")) {
          name = line.slice(6).trim();
        } else if (line.startsWith("data:")) {
          data.push(line.slice(5).replace(/^ /, ""));
        }
      }
    }
  } catch {
    return false;
  }
}

function showNotice(message) {
  notice.textContent = message;
  notice.hidden = !message;
}

// An error in the API's own words (for a form's own error line; showError adds the code, for the notice).
const errorText = (error) => (error instanceof ApiError ? error.message : `Request failed: ${error.message}`);

function showError(error) {
  showNotice(error instanceof ApiError ? `${error.message} (${error.code})` : `Request failed: ${error.message}`);
}

// Runs tick now and again every POLL_MS while it returns true; transient failures keep it going.
function poll(tick) {
  let timer;
  let stopped = false;
  const run = async () => {
    let again;
    try {
      again = await tick();
    } catch (error) {
      if (stopped) return; // a tick that outlived its page failed on slots no longer there: not the user's concern
      showError(error);
      again = !(error instanceof ApiError) || error.status === 429 || error.status >= 500;
    }
    if (again && !stopped) timer = setTimeout(run, POLL_MS);
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function mount(templateId) {
  const content = document.getElementById(templateId).content.cloneNode(true);
  view.replaceChildren(content);
  return (name) => view.querySelector(`[data-slot="${name}"]`);
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

const enc = encodeURIComponent;
const when = (iso) => (iso ? new Date(iso).toLocaleString("sv-SE") : "—"); // local time as 2026-11-27 14:05:09
const plural = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;
const badge = (status) => el("span", { className: `badge ${status}`, textContent: status });
const taskLink = (id) => el("a", { href: `#/tasks/${enc(id)}`, textContent: id });
// a batch item's name or the URL's file name; uploaded bytes have none. Long ones are cut, whole on hover.
const sourceCell = (source) => el("span", { className: "source", textContent: source ?? "upload", title: source ?? "" });
const setBadge = (node, status) => Object.assign(node, { className: `badge ${status}`, textContent: status });
const setBar = (node, fraction) => (node.style.width = `${Math.round(Math.min(1, fraction) * 100)}%`);

function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((cell) => el("td", {}, cell)))));
}

function fillFacts(slot, facts) {
  for (const [name, value] of Object.entries(facts)) slot(name).textContent = value;
}

// A drop zone (a <label> around a hidden file input): calls onChosen with the file dropped on it or picked.
function onFile(zone, input, onChosen) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) onChosen(event.dataTransfer.files[0]);
  });
  input.addEventListener("change", () => {
    if (input.files.length) onChosen(input.files[0]);
    input.value = ""; // the same file picked again is a new choice
  });
}

// A file as a data URI: the API takes base64 with or without its prefix.
function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// Polls GET v1/detect/{id} every POLL_MS until the task is final and resolves with it; null once the page that
// asked is left (signal aborted). Transient failures (no answer, 429, 5xx) are shown and polled through.
async function finalTask(id, signal) {
  for (;;) {
    try {
      const task = await api(`v1/detect/${enc(id)}`);
      if (!LIVE.has(task.status) || signal.aborted) return signal.aborted ? null : task;
    } catch (error) {
      if (signal.aborted) return null;
      if (error instanceof ApiError && error.status !== 429 && error.status < 500) throw error;
      showError(error);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    if (signal.aborted) return null;
  }
}

function signInPage() {
  const slot = mount("tpl-sign-in");
  slot("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, new FormData(event.target).get("key").trim());
    try {
      await api("v1/detect?limit=1");
      showNotice("");
      if (location.hash === "#/tasks") route();
      else location.hash = "#/tasks";
    } catch (error) {
      if (error.status !== 401) showError(error);
    }
  });
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY);
  route();
  showNotice(message);
}

function tasksPage() {
  const slot = mount("tpl-tasks");
  const cursors = [null]; // the cursor of each page seen, for "First page" and "Next page"
  let stopPolling = () => {};
  let nextCursor = null;

  const submit = async (body, label) => {
    slot("drop-label").textContent = label;
    try {
      const accepted = await api("v1/detect", { method: "POST", body, timeout: UPLOAD_TIMEOUT_MS });
      location.hash = `#/tasks/${enc(accepted.detect_task_id)}`;
    } catch (error) {
      showError(error);
      slot("drop-label").textContent = "Drop an image or video here, or click to choose one";
    }
  };
  onFile(slot("drop"), slot("file"), (file) => {
    dataUrl(file).then(
      (img) => submit({ img }, `Uploading ${file.name}…`),
      () => showNotice(`Could not read ${file.name}`),
    );
  });
  slot("url-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit({ url: new FormData(event.target).get("url") }, "Submitting the URL…");
  });

  const progressCell = (task, detail) => {
    if (!detail) return LIVE.has(task.status) ? "waiting" : "—";
    const { done, total } = detail.progress;
    const bar = el("div", { className: "bar small" }, el("div"));
    setBar(bar.firstChild, total ? done / total : 0);
    return el("span", { className: "cell-progress" }, bar, total ? `${done}/${total}` : "starting");
  };
  const load = () => {
    stopPolling();
    stopPolling = poll(async () => {
      const query = new URLSearchParams({ limit: PAGE_SIZE });
      if (slot("status").value) query.set("status", slot("status").value);
      if (cursors.at(-1)) query.set("cursor", cursors.at(-1));
      const page = await api(`v1/detect?${query}`);
      const running = page.items.filter((task) => task.status === "processing").slice(0, PROGRESS_LOOKUPS);
      const details = new Map();
      await Promise.all(running.map(async (task) => {
        details.set(task.detect_task_id, await api(`v1/detect/${enc(task.detect_task_id)}`).catch(() => null));
      }));
      fillRows(slot("rows"), page.items.map((task) => [
        taskLink(task.detect_task_id), sourceCell(task.source), task.faces == null ? "—" : String(task.faces),
        badge(task.status), task.kind ?? "—", progressCell(task, details.get(task.detect_task_id)),
        when(task.created_at), when(task.finished_at),
      ]));
      nextCursor = page.next_cursor;
      slot("empty").hidden = page.items.length > 0;
      slot("next").hidden = !nextCursor;
      slot("first").hidden = cursors.length === 1;
      return page.items.some((task) => LIVE.has(task.status));
    });
  };
  slot("status").addEventListener("change", () => {
    cursors.splice(1);
    load();
  });
  slot("next").addEventListener("click", () => {
    cursors.push(nextCursor);
    load();
  });
  slot("first").addEventListener("click", () => {
    cursors.splice(1);
    load();
  });
  load();
  return () => stopPolling();
}

function taskPage(id) {
  const slot = mount("tpl-task");
  const blobUrls = new Map(); // path -> blob URL (or null: no picture), fetched once per page
  let shownResult = false;
  let selectedKey = null; // a slow preview must not replace the one picked after it
  slot("id").textContent = id;

  const picture = async (path) => {
    if (!blobUrls.has(path)) blobUrls.set(path, await apiImage(path).catch(() => null));
    return blobUrls.get(path);
  };
  const showPicture = (img, note, url, missing) => {
    img.hidden = !url;
    img.parentElement.classList.toggle("empty", !url);
    if (url) img.src = url;
    else note.textContent = missing;
  };
  const selectFrame = async (key, frame, row) => {
    selectedKey = key;
    for (const other of slot("frame-rows").children) other.classList.toggle("selected", other === row);
    const caption = `Frame ${key}: ${plural(frame.region.length, "face")}`;
    slot("preview-note").textContent = caption;
    const url = await picture(`v1/detect/${enc(id)}/preview.jpg?frame=${enc(key)}`);
    if (selectedKey === key) {
      showPicture(slot("preview-img"), slot("preview-note"), url, `${caption} (no annotated preview on this server)`);
    }
  };
  const showResult = (result) => {
    const keys = Object.keys(result.faces_obj).sort((a, b) => Number(a) - Number(b));
    slot("frames-card").hidden = false;
    const rows = keys.map((key) => {
      const frame = result.faces_obj[key];
      const scores = result.scores[key] ?? [];
      const row = el("tr", {}, ...[key, frame.frame_time == null ? "—" : `${frame.frame_time.toFixed(2)} s`,
        String(frame.region.length), scores.length ? Math.max(...scores).toFixed(3) : "—"]
        .map((text) => el("td", { textContent: text })));
      row.addEventListener("click", () => selectFrame(key, frame, row));
      return row;
    });
    slot("frame-rows").replaceChildren(...rows);
    const start = Math.max(0, keys.findIndex((key) => result.faces_obj[key].region.length > 0));
    if (rows.length) selectFrame(keys[start], result.faces_obj[keys[start]], rows[start]);
    if (result.media.kind === "video") {
      // without a contact sheet the frame list below says all it would
      picture(`v1/detect/${enc(id)}/contact.jpg`).then((url) => {
        slot("contact").hidden = !url;
        if (url) slot("contact-img").src = url;
      });
    }
    const persons = result.persons ?? [];
    slot("persons-card").hidden = persons.length === 0;
    fillRows(slot("person-rows"), persons.map((person) => [
      String(person.index), faceThumbnail(person.face_url), person.person_id,
      `${person.first_seen.toFixed(2)}–${person.last_seen.toFixed(2)} s`, String(person.appearances.length),
      person.confidence.toFixed(3),
    ]));
  };
  const render = (task) => {
    const result = task.result;
    const faces = result ? Object.values(result.faces_obj).reduce((sum, frame) => sum + frame.region.length, 0) : null;
    setBadge(slot("status"), task.status);
    setBar(slot("bar"), task.progress.total ? task.progress.done / task.progress.total : task.status === "succeeded" ? 1 : 0);
    fillFacts(slot, {
      kind: task.kind ?? "—",
      progress: task.progress.total ? `${task.progress.done} of ${task.progress.total} frames` : "—",
      frames: result ? String(result.frame_count) : "—",
      faces: faces === null ? "—" : String(faces),
      persons: result?.persons ? String(result.persons.length) : "—",
      detector: task.detector ?? "—",
      created: when(task.created_at),
      finished: when(task.finished_at),
    });
    slot("error").hidden = !task.error;
    if (task.error) slot("error").textContent = `${task.error.code}: ${task.error.message}`;
    const remove = slot("remove");
    remove.hidden = false;
    remove.textContent = LIVE.has(task.status) ? "Cancel task" : "Delete task";
    slot("json").textContent = JSON.stringify(task, null, 2);
    if (result && !shownResult) {
      shownResult = true;
      showResult(result);
    }
    return LIVE.has(task.status);
  };

  // Live from the event stream while the task runs: status, progress and faces frame by frame; the whole
  // task is read once at the final event. Polled every POLL_MS where the server has no stream.
  const taskPath = `v1/detect/${enc(id)}`;
  const streaming = new AbortController();
  const facesSoFar = new Map(); // frame -> faces, so a replayed frame is not counted twice
  let stopPolling = () => {};
  const showEvent = (name, data) => {
    if (name === "final") return;
    if (data.status) setBadge(slot("status"), data.status);
    const { done, total } = data.progress;
    setBar(slot("bar"), total ? done / total : 0);
    slot("progress").textContent = total ? `${done} of ${total} frames` : "—";
    if (name === "progress") {
      facesSoFar.set(data.frame, data.faces_obj[data.frame].region.length);
      slot("frames").textContent = String(facesSoFar.size);
      slot("faces").textContent = String([...facesSoFar.values()].reduce((sum, faces) => sum + faces, 0));
    }
  };
  const follow = async () => {
    const task = await api(taskPath).catch(showError);
    if (task && !render(task)) return;
    if (task && (await followEvents(`${taskPath}/events`, showEvent, streaming.signal))) {
      const final = await api(taskPath).catch(showError);
      if (final && !render(final)) return;
    }
    if (!streaming.signal.aborted) stopPolling = poll(async () => render(await api(taskPath)));
  };
  follow();
  slot("remove").addEventListener("click", async () => {
    const live = slot("remove").textContent === "Cancel task";
    if (!live && !confirm("Delete this task and its stored media?")) return;
    try {
      const task = await api(`v1/detect/${enc(id)}`, { method: "DELETE" });
      if (live) render(task);
      else location.hash = "#/tasks";
    } catch (error) {
      showError(error);
    }
  });
  return () => {
    streaming.abort();
    stopPolling();
    for (const url of blobUrls.values()) if (url) URL.revokeObjectURL(url);
  };
}

function faceThumbnail(url) {
  // Only http(s) links become a src: a result field must never smuggle in another scheme.
  if (!url || !/^https?:\/\//.test(url)) return "—";
  return el("img", { className: "face", src: url, alt: "Face crop" });
}

// A list page with "First page" / "Next page" over next_cursor: load(cursor) fills the page and returns its
// next_cursor. Returns reload(), which shows the first page again.
function paged(slot, load) {
  const cursors = [null];
  const show = async () => {
    try {
      const next = await load(cursors.at(-1));
      slot("next").hidden = !next;
      slot("next").onclick = () => {
        cursors.push(next);
        show();
      };
      slot("first").hidden = cursors.length === 1;
    } catch (error) {
      showError(error);
    }
  };
  slot("first").addEventListener("click", () => {
    cursors.splice(1);
    show();
  });
  return (fromStart = true) => {
    if (fromStart) cursors.splice(1);
    return show();
  };
}

function collectionsPage() {
  const slot = mount("tpl-collections");
  const collectionLink = (id) => el("a", { href: `#/collections/${enc(id)}`, textContent: id });
  const reload = paged(slot, async (cursor) => {
    const query = new URLSearchParams({ limit: PAGE_SIZE });
    if (cursor) query.set("cursor", cursor);
    const page = await api(`v1/collections?${query}`);
    fillRows(slot("rows"), page.items.map((collection) => [
      collectionLink(collection.collection_id), collection.description ?? "—", String(collection.face_count),
      when(collection.created_at), deleteCollectionButton(collection.collection_id, () => reload()),
    ]));
    slot("empty").hidden = page.items.length > 0;
    return page.next_cursor;
  });
  slot("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const description = form.get("description").trim();
    slot("create-error").hidden = true;
    try {
      const body = { collection_id: form.get("collection_id").trim(), description: description || null };
      await api("v1/collections", { method: "POST", body });
      event.target.reset();
      await reload();
    } catch (error) {
      // 409 (the id is taken) and 422 (not a valid id) say what is wrong in the API's own words
      slot("create-error").textContent = errorText(error);
      slot("create-error").hidden = false;
    }
  });
  reload();
}

function deleteCollectionButton(id, then) {
  const button = el("button", { type: "button", className: "quiet danger", textContent: "Delete" });
  button.setAttribute("aria-label", `Delete collection ${id}`);
  button.addEventListener("click", async () => {
    if (!confirm(`Delete collection ${id}, with all its faces and their crops?`)) return;
    try {
      await api(`v1/collections/${enc(id)}`, { method: "DELETE" });
      then();
    } catch (error) {
      showError(error);
    }
  });
  return button;
}

const MATCH_COLUMNS = ["Face", "External id", "Similarity"];
const UNINDEXED = {
  too_small: "the face is too small",
  low_score: "the detector is not sure it is a face",
  extreme_pose: "the face is turned too far",
  blurry: "the face is blurred or too dark",
  exceeds_max_faces: "only the largest face is indexed",
};

function collectionPage(id) {
  const slot = mount("tpl-collection");
  const base = `v1/collections/${enc(id)}`;
  const leaving = new AbortController();
  const knownFaces = new Map(); // face_id -> face, from the pages shown and from lookups by external_id
  const lookups = new Map(); // external_id -> its lookup, made once
  let photoUrl = null; // the searched photo, shown from this browser's copy (blob:)
  slot("id").textContent = id;

  const showCollection = async () => {
    const collection = await api(base);
    fillFacts(slot, {
      description: collection.description ?? "—",
      "face-count": String(collection.face_count),
      created: when(collection.created_at),
    });
  };
  const faceTile = (face) => {
    const remove = el("button", { type: "button", className: "quiet danger", textContent: "Delete" });
    remove.setAttribute("aria-label", `Delete face ${face.face_id}`);
    remove.addEventListener("click", async () => {
      if (!confirm(`Delete this face of ${face.external_id ?? "no one named"} from the collection?`)) return;
      try {
        await api(`${base}/faces/${enc(face.face_id)}`, { method: "DELETE" });
        await Promise.all([showCollection(), reloadFaces(false)]);
      } catch (error) {
        showError(error);
      }
    });
    return el("li", { className: "face-tile" },
      cropImage(face.face_url, face.external_id, "large"),
      el("strong", { textContent: face.external_id ?? "no external id" }),
      el("span", { className: "muted small", textContent: when(face.created_at), title: `face ${face.face_id}` }),
      remove);
  };
  const reloadFaces = paged(slot, async (cursor) => {
    const query = new URLSearchParams({ limit: PAGE_SIZE });
    if (cursor) query.set("cursor", cursor);
    const page = await api(`${base}/faces?${query}`);
    for (const face of page.items) knownFaces.set(face.face_id, face);
    slot("faces").replaceChildren(...page.items.map(faceTile));
    slot("no-faces").hidden = page.items.length > 0;
    return page.next_cursor;
  });

  // Runs a detect task on a photo with one of the collection options, and resolves with the final task.
  const detect = async (file, options) => {
    const accepted = await api("v1/detect", {
      method: "POST", body: { img: await dataUrl(file), ...options }, timeout: UPLOAD_TIMEOUT_MS,
    });
    return finalTask(accepted.detect_task_id, leaving.signal);
  };
  const taskNote = (task) => el("p", { className: "muted small" }, "Task ", taskLink(task.detect_task_id));

  // Add a face: the photo waits for the form's submit, so its external id can be typed before or after.
  let chosen = null;
  onFile(slot("index-drop"), slot("index-file"), (file) => {
    chosen = file;
    slot("index-label").textContent = `${file.name}: press "Add face" to index it`;
  });
  const outcome = slot("index-outcome");
  const showOutcome = (...lines) => {
    outcome.replaceChildren(...lines);
    outcome.hidden = false;
  };
  slot("index-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!chosen) {
      showOutcome(el("p", { className: "error", textContent: "Choose a photo first." }));
      return;
    }
    const externalId = new FormData(event.target).get("external_id").trim();
    const file = chosen;
    showOutcome(el("p", { textContent: `Indexing ${file.name}…` }));
    try {
      const task = await detect(file, { index: { collection_id: id, external_id: externalId || null } });
      if (!task) return;
      showOutcome(...indexOutcome(task), taskNote(task));
      chosen = null;
      slot("index-label").textContent = "Drop a photo here, or click to choose one";
      await Promise.all([showCollection(), reloadFaces()]);
    } catch (error) {
      showOutcome(el("p", { className: "error", textContent: errorText(error) }));
    }
  });

  // Search: each face of the photo, with the collection's faces like it.
  const matchCrop = async (match) => {
    if (!knownFaces.has(match.face_id) && match.external_id) {
      if (!lookups.has(match.external_id)) {
        const query = new URLSearchParams({ external_id: match.external_id, limit: 500 });
        lookups.set(match.external_id, api(`${base}/faces?${query}`).then((page) => {
          for (const face of page.items) knownFaces.set(face.face_id, face);
        }, () => null));
      }
      await lookups.get(match.external_id);
    }
    return cropImage(knownFaces.get(match.face_id)?.face_url, match.external_id);
  };
  const searchStatus = (text) => {
    slot("search-status").textContent = text;
    slot("search-status").hidden = !text;
  };
  onFile(slot("search-drop"), slot("search-file"), async (file) => {
    const threshold = Number(slot("threshold").value || 0.5);
    slot("search-card").hidden = true;
    searchStatus(`Searching the faces of ${file.name}…`);
    try {
      const task = await detect(file, { search: { collection_id: id, threshold } });
      if (!task) return;
      if (task.status !== "succeeded") {
        searchStatus(`The search failed: ${task.error?.code ?? task.status}: ${task.error?.message ?? ""}`);
        return;
      }
      if (photoUrl) URL.revokeObjectURL(photoUrl);
      photoUrl = URL.createObjectURL(file);
      await showMatches(task, photoUrl, threshold);
      searchStatus("");
    } catch (error) {
      searchStatus(errorText(error));
    }
  });
  const showMatches = async (task, url, threshold) => {
    const { faces_obj: frames, matches = {}, media } = task.result;
    const faces = Object.keys(frames).sort((a, b) => Number(a) - Number(b)).flatMap((key) =>
      frames[key].region.map((region, index) => ({ key, region, matches: matches[key]?.[index] ?? [] })));
    const image = media.kind === "image";
    slot("photo-img").hidden = !image;
    const boxes = image ? faces.map((face, n) => faceBox(face.region, n + 1, media)) : [];
    slot("photo").replaceChildren(slot("photo-img"), ...boxes);
    if (image) slot("photo-img").src = url;
    slot("photo-note").textContent = `${plural(faces.length, "face")} found; matches are ${threshold} similar or more`;
    const lists = await Promise.all(faces.map(async (face, n) => {
      const heading = `Face ${n + 1}${image ? "" : ` (frame ${face.key})`}: ${plural(face.matches.length, "match")}`;
      if (!face.matches.length) return el("div", { className: "face-matches" }, el("h3", { textContent: heading }));
      const rows = await Promise.all(face.matches.map(async (match) => [
        await matchCrop(match), match.external_id ?? "no external id", match.similarity.toFixed(3),
      ]));
      const body = el("tbody");
      fillRows(body, rows);
      const head = el("tr", {}, ...MATCH_COLUMNS.map((name) => el("th", { textContent: name })));
      const table = el("table", { className: "grid" }, el("thead", {}, head), body);
      return el("div", { className: "face-matches" }, el("h3", { textContent: heading }), table);
    }));
    slot("match-list").replaceChildren(...lists, taskNote(task));
    slot("search-card").hidden = false;
  };

  slot("remove").addEventListener("click", async () => {
    if (!confirm(`Delete collection ${id}, with all its faces and their crops?`)) return;
    try {
      await api(base, { method: "DELETE" });
      location.hash = "#/collections";
    } catch (error) {
      showError(error);
    }
  });
  showCollection().catch(showError);
  reloadFaces();
  return () => {
    leaving.abort();
    if (photoUrl) URL.revokeObjectURL(photoUrl);
  };
}

// What an index option did: the faces indexed, and why the others were not.
function indexOutcome(task) {
  if (task.status !== "succeeded") {
    const why = `${task.error?.code ?? task.status}: ${task.error?.message ?? ""}`;
    return [el("p", { className: "error", textContent: `Not indexed: ${why}` })];
  }
  const { indexed, unindexed } = task.result.index;
  const face = (item) => `face ${item.index + 1}${item.frame === "0" ? "" : ` of frame ${item.frame}`}`;
  if (!indexed.length && !unindexed.length) return [el("p", { textContent: "No face found in the photo." })];
  const summary = `Indexed ${plural(indexed.length, "face")}`;
  const lines = [el("p", { className: indexed.length ? "ok" : "error", textContent: summary })];
  const items = [
    ...indexed.map((item) => `Indexed ${face(item)}, face id ${item.face_id}`),
    ...unindexed.map((item) => `Not indexed ${face(item)}: ${item.reason} (${UNINDEXED[item.reason] ?? "refused"})`),
  ];
  lines.push(el("ul", { className: "plain" }, ...items.map((text) => el("li", { textContent: text }))));
  return lines;
}

// A face's box on the searched photo, placed in percent of the image so it scales with it.
function faceBox([x, y, width, height], number, media) {
  const box = el("span", { className: "box", textContent: String(number) });
  Object.assign(box.style, {
    left: `${(100 * x) / media.width}%`,
    top: `${(100 * y) / media.height}%`,
    width: `${(100 * width) / media.width}%`,
    height: `${(100 * height) / media.height}%`,
  });
  return box;
}

// A collection face's crop; "no crop" where it has none.
function cropImage(url, externalId, size = "") {
  const image = faceThumbnail(url);
  if (typeof image === "string") return el("span", { className: `face missing ${size}`, textContent: "no crop" });
  image.alt = `Face crop of ${externalId ?? "an unnamed face"}`;
  image.className = `face ${size}`;
  return image;
}

function batchesPage(id) {
  const slot = mount("tpl-batches");
  slot("form").addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/batches/${enc(new FormData(event.target).get("batch").trim())}`;
  });
  if (!id) return undefined;
  slot("form").elements.batch.value = id;
  return poll(async () => {
    const batch = await api(`v1/batches/${enc(id)}`);
    slot("batch").hidden = false;
    slot("id").textContent = batch.batch_id;
    setBadge(slot("status"), batch.status);
    setBar(slot("bar"), batch.progress);
    fillFacts(slot, {
      total: String(batch.total),
      progress: `${Math.round(batch.progress * 100)}%`,
      eta: batch.eta_seconds == null ? "—" : duration(batch.eta_seconds),
      created: when(batch.created_at),
      finished: when(batch.finished_at),
    });
    fillRows(slot("count-rows"), Object.entries(batch.counts).map(([status, count]) => [badge(status), String(count)]));
    fillRows(slot("failure-rows"), batch.failures.map((failure) => [
      String(failure.position), taskLink(failure.detect_task_id),
      `${failure.error.code ?? "error"}: ${failure.error.message ?? ""}`,
    ]));
    slot("no-failures").hidden = batch.failures.length > 0;
    slot("persons").hidden = !batch.persons;
    if (batch.persons) showBatchPersons(slot, await apiLines(`v1/batches/${enc(id)}/persons`), batch.status);
    return LIVE.has(batch.status);
  });
}

const PERSONS_SHOWN = 100;

// Each batch-wide person with the items it is in (linked to their tasks) and when it is seen there.
function showBatchPersons(slot, persons, status) {
  const shared = persons.filter((person) => person.items.length > 1).length;
  const shown = persons.length > PERSONS_SHOWN ? `; the first ${PERSONS_SHOWN} are listed` : "";
  const waiting = LIVE.has(status) ? "; until the batch ends, a person seen in fewer than three items may be missing" : "";
  slot("persons-summary").textContent = `${plural(persons.length, "person")}, ${shared} in several items${shown}${waiting}.`;
  fillRows(slot("person-rows"), persons.slice(0, PERSONS_SHOWN).map((person) => [
    el("code", { textContent: person.batch_person_id }),
    el("span", {}, ...person.items.flatMap((item, number) => [
      number ? ", " : "",
      el("a", { href: `#/tasks/${enc(item.detect_task_id)}`, textContent: item.name ?? `item ${item.position}` }),
      ` (${item.time_ranges.map(([first, last]) => (first === last ? `${first}` : `${first}–${last}`)).join(", ")})`,
    ])),
  ]));
}

function duration(seconds) {
  const minutes = Math.floor(seconds / 60);
  return minutes ? `${minutes} min ${Math.round(seconds % 60)} s` : `${Math.round(seconds)} s`;
}

function webhooksPage() {
  const slot = mount("tpl-webhooks");
  const showEndpoint = (endpoint) => {
    slot("endpoint").hidden = false;
    fillFacts(slot, {
      url: endpoint.url ?? "not set",
      rotated: when(endpoint.secret_rotated_at),
      previous: when(endpoint.previous_secret_expires_at),
    });
  };
  // A 404 here means this server lacks the route: say so instead of failing.
  const missingAs = (name) => (error) => {
    if (error.status !== 404) throw error;
    slot(name).hidden = false;
    return null;
  };
  const act = (work) => async (event) => {
    event.preventDefault();
    try {
      await work(event);
    } catch (error) {
      showError(error);
    }
  };
  slot("form").addEventListener("submit", act(async (event) => {
    const url = new FormData(event.target).get("url");
    showEndpoint(await api("v1/webhook-endpoint", { method: "PUT", body: { url } }));
  }));
  slot("rotate").addEventListener("click", act(async () => {
    if (!confirm("Make a new signing secret? The current one keeps signing for a grace period.")) return;
    const rotated = await api("v1/webhook-endpoint/rotate-secret", { method: "POST" });
    slot("secret").textContent = rotated.secret;
    slot("secret-box").hidden = false;
    slot("previous").textContent = when(rotated.previous_secret_expires_at);
  }));
  slot("remove").addEventListener("click", act(async () => {
    if (!confirm("Remove the webhook endpoint? Tasks without a callback_url then send no events.")) return;
    await api("v1/webhook-endpoint", { method: "DELETE" });
    showEndpoint({ url: null });
  }));
  api("v1/webhook-endpoint").then(showEndpoint, missingAs("endpoint-missing")).catch(showError);
  api("v1/deliveries?limit=20").then((page) => {
    fillRows(slot("delivery-rows"), page.items.map((delivery) => [
      when(delivery.created_at), delivery.webhook_id, String(delivery.attempt ?? "—"), delivery.url ?? "—",
      delivery.status_code == null ? delivery.error ?? "no answer" : String(delivery.status_code),
      delivery.latency_ms == null ? "—" : `${delivery.latency_ms} ms`,
    ]));
  }, (error) => {
    slot("deliveries").hidden = error.status === 404;
    return missingAs("deliveries-missing")(error);
  }).catch(showError);
}

const ROUTES = [
  [/^#\/tasks\/([^/]+)$/, "tasks", taskPage],
  [/^#\/batches(?:\/([^/]+))?$/, "batches", batchesPage],
  [/^#\/collections\/([^/]+)$/, "collections", collectionPage],
  [/^#\/collections$/, "collections", collectionsPage],
  [/^#\/webhooks$/, "webhooks", webhooksPage],
  [/^/, "tasks", tasksPage],
];

function route() {
  leaveView();
  leaveView = () => {};
  showNotice("");
  const signedIn = Boolean(sessionStorage.getItem(KEY));
  document.getElementById("nav").hidden = !signedIn;
  if (!signedIn) {
    signInPage();
    return;
  }
  const [pattern, section, page] = ROUTES.find(([pattern]) => pattern.test(location.hash));
  const args = location.hash.match(pattern).slice(1).map((part) => part && decodeURIComponent(part));
  for (const link of document.querySelectorAll("[data-nav]")) link.classList.toggle("active", link.dataset.nav === section);
  leaveView = page(...args) ?? (() => {});
}

document.getElementById("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
route();
