// The Kandinsky web app: a form over the job API (POST /v1/jobs, GET /v1/jobs/{id},
// its preview and images, POST /v1/jobs/{id}/cancel). No dependencies, works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { job: null, timer: null, image: null, hint: null, previewUrl: null, lastPreview: null };

// --- the API key and requests -------------------------------------------------------------
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("kandinsky-api-key") || "";
keyInput.addEventListener("change", () => localStorage.setItem("kandinsky-api-key", keyInput.value));

function headers(json) {
  const h = {};
  if (keyInput.value) h["Authorization"] = "Bearer " + keyInput.value;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

async function blobUrl(path) {
  const response = await api("GET", path);
  return URL.createObjectURL(await response.blob());
}

// --- the mode and its fields --------------------------------------------------------------
function mode() { return document.querySelector('input[name="mode"]:checked').value; }

function showMode() {
  const m = mode();
  for (const el of document.querySelectorAll("[data-modes]")) {
    el.hidden = !el.dataset.modes.split(" ").includes(m);
  }
  $("image-label").textContent = m === "controlnet" ? "Image (optional, to start from)" : "Image";
  if (m === "fusion" && $("items").children.length === 0) {
    addItem("text-item");
    addItem("image-item");
  }
}
for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", showMode);
}

function readFile(input) {
  return new Promise((resolve, reject) => {
    const file = input.files[0];
    if (!file) { resolve(null); return; }
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

$("image-file").addEventListener("change", async () => {
  state.image = await readFile($("image-file"));
  if (state.image) $("mask-image").src = state.image;
});
$("hint-file").addEventListener("change", async () => { state.hint = await readFile($("hint-file")); });

function bindOutput(input, output) {
  const show = () => { output.textContent = input.value; };
  input.addEventListener("input", show);
  show();
}
bindOutput($("strength"), $("strength-value"));
bindOutput($("brush"), $("brush-value"));

// --- fusion items -------------------------------------------------------------------------
function addItem(template, values) {
  const item = $(template).content.firstElementChild.cloneNode(true);
  const weight = item.querySelector(".item-weight");
  bindOutput(weight, item.querySelector(".item-weight-value"));
  item.querySelector(".item-remove").addEventListener("click", () => item.remove());
  const file = item.querySelector(".item-file");
  if (file) {
    file.addEventListener("change", async () => { item.dataset.image = (await readFile(file)) || ""; });
  }
  if (values) {
    weight.value = values.weight;
    weight.dispatchEvent(new Event("input"));
    if (values.text !== undefined) item.querySelector(".item-text").value = values.text;
    if (values.image !== undefined) item.dataset.image = values.image;
  }
  $("items").appendChild(item);
  return item;
}
$("add-text").addEventListener("click", () => addItem("text-item").querySelector("input").focus());
$("add-image").addEventListener("click", () => addItem("image-item").querySelector("input").focus());

// --- the inpainting mask: painted in white on black, at the image's own size ---------------
const canvas = $("mask-canvas");
const ctx = canvas.getContext("2d");
function resetMask() {
  const img = $("mask-image");
  canvas.width = img.naturalWidth || 512;
  canvas.height = img.naturalHeight || 512;
  ctx.fillStyle = "black";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  state.masked = false;
}
$("mask-image").addEventListener("load", resetMask);
$("mask-clear").addEventListener("click", resetMask);
$("mask-invert").addEventListener("click", () => {
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < data.data.length; i += 4) {
    const v = 255 - data.data[i];
    data.data[i] = data.data[i + 1] = data.data[i + 2] = v;
  }
  ctx.putImageData(data, 0, 0);
  state.masked = true;
});
let painting = false;
function paint(event) {
  const rect = canvas.getBoundingClientRect();
  const scale = canvas.width / rect.width;
  const x = (event.clientX - rect.left) * scale;
  const y = (event.clientY - rect.top) * scale;
  ctx.fillStyle = "white";
  ctx.beginPath();
  ctx.arc(x, y, (Number($("brush").value) / 2) * scale, 0, 2 * Math.PI);
  ctx.fill();
  state.masked = true;
}
canvas.addEventListener("pointerdown", (e) => { painting = true; canvas.setPointerCapture(e.pointerId); paint(e); });
canvas.addEventListener("pointermove", (e) => { if (painting) paint(e); });
canvas.addEventListener("pointerup", () => { painting = false; });
canvas.addEventListener("pointercancel", () => { painting = false; });
resetMask();

// --- the request --------------------------------------------------------------------------
function number(id) {
  const v = $(id).value.trim();
  return v === "" ? undefined : Number(v);
}

async function body() {
  const m = mode();
  const b = {
    mode: m,
    prompt: $("prompt").value,
    width: number("width"),
    height: number("height"),
    steps: number("steps"),
    prior_steps: number("prior-steps"),
    guidance: number("guidance"),
    num_images: number("num-images"),
    seed: number("seed"),
  };
  if ($("negative").value) b.negative_prompt = $("negative").value;
  if ($("sampler").value) { b.sampler = $("sampler").value; b.karras = $("karras").checked; }
  const needsImage = ["img2img", "inpaint", "outpaint", "variation", "emb2emb"].includes(m);
  if (needsImage && !state.image) throw new Error("choose an image first");
  if (needsImage || (m === "controlnet" && state.image)) b.image = state.image;
  if (["img2img", "emb2emb", "controlnet"].includes(m)) b.strength = number("strength");
  if (m === "inpaint") {
    if (!state.masked) throw new Error("paint the areas to repaint first");
    b.mask = canvas.toDataURL("image/png");
  }
  if (m === "outpaint") {
    b.extend = ["left", "top", "right", "bottom"].map((s) => number("extend-" + s) || 0);
    delete b.width; delete b.height;
  }
  if (m === "controlnet") {
    if (!state.hint) throw new Error("choose a depth map first");
    b.hint = state.hint;
  }
  if (m === "fusion") {
    b.items = [...$("items").children].map((item) => {
      const weight = Number(item.querySelector(".item-weight").value);
      const text = item.querySelector(".item-text");
      if (text) return { text: text.value, weight };
      if (!item.dataset.image) throw new Error("choose an image for every image item");
      return { image: item.dataset.image, weight };
    });
  }
  return b;
}

// --- running a job ------------------------------------------------------------------------
function setStatus(text, error) {
  $("status").textContent = text;
  $("status").classList.toggle("error", !!error);
}

function busy(on) {
  $("generate").disabled = on;
  $("cancel").disabled = !on;
}

async function generate(event) {
  if (event) event.preventDefault();
  if (state.job) return;
  let request;
  try { request = await body(); } catch (e) { setStatus(e.message, true); return; }
  busy(true);
  $("progress").value = 0;
  setStatus("Submitting…");
  try {
    const job = await (await api("POST", "/v1/jobs", request)).json();
    state.job = { id: job.id, request };
    follow();
  } catch (e) {
    busy(false);
    setStatus(e.status === 429 ? "The queue is full: try again in a moment." : e.message, true);
  }
}

function describe(job) {
  switch (job.state) {
    case "queued": return job.position === 0 ? "Waiting: next in line." : "Waiting: " + job.position + " ahead.";
    case "running":
      if (job.stage === "loading") return "Loading the models…";
      if (job.stage === "decoding") return "Decoding the image…";
      return (job.stage === "prior" ? "Prior" : "Decoder") + " step " + job.step + " of " + job.of;
    case "done": return "Done.";
    case "cancelled": return "Cancelled.";
    case "failed": return "Failed: " + job.message;
  }
  return job.state;
}

function fraction(job, request) {
  if (job.state !== "running") return job.state === "done" ? 1 : 0;
  // A variation runs no prior steps.
  const prior = request.mode === "variation" ? 0 : request.prior_steps || 25;
  const decoder = request.steps || 50;
  const total = prior + decoder;
  if (job.stage === "prior") return (job.step / Math.max(job.of, 1)) * (prior / total);
  if (job.stage === "decoder") return prior / total + (job.step / Math.max(job.of, 1)) * (decoder / total);
  if (job.stage === "decoding") return 1;
  return 0;
}

async function follow() {
  const current = state.job;
  if (!current) return;
  let job;
  try {
    job = await (await api("GET", "/v1/jobs/" + current.id)).json();
  } catch (e) {
    finish(); setStatus(e.message, true); return;
  }
  setStatus(describe(job), job.state === "failed");
  $("progress").value = fraction(job, current.request);
  if (job.preview && job.preview !== state.lastPreview) {
    state.lastPreview = job.preview;
    try {
      const url = await blobUrl(job.preview);
      if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
      state.previewUrl = url;
      $("preview").src = url;
      $("preview").hidden = false;
    } catch (_) { /* the job moved on */ }
  }
  if (job.state === "done") {
    await addResults(job, current.request);
    finish();
    setStatus("Done.");
    return;
  }
  if (["failed", "cancelled"].includes(job.state)) { finish(); return; }
  state.timer = setTimeout(follow, 250);
}

function finish() {
  clearTimeout(state.timer);
  state.job = null;
  state.lastPreview = null;
  $("preview").hidden = true;
  busy(false);
}

async function cancel() {
  if (!state.job) return;
  setStatus("Cancelling…");
  try { await api("POST", "/v1/jobs/" + state.job.id + "/cancel"); } catch (e) { setStatus(e.message, true); }
}

// --- the gallery --------------------------------------------------------------------------
function summary(request) {
  const parts = [request.mode];
  if (request.prompt) parts.push("“" + request.prompt + "”");
  for (const k of ["width", "height", "steps", "prior_steps", "guidance", "seed", "sampler", "strength"]) {
    if (request[k] !== undefined) parts.push(k + " " + request[k]);
  }
  return parts.join(" · ");
}

async function addResults(job, request) {
  for (const path of job.images) {
    const url = await blobUrl(path);
    const li = document.createElement("li");
    li.className = "result";
    const img = document.createElement("img");
    img.src = url;
    img.alt = summary(request);
    const p = document.createElement("p");
    p.className = "params";
    p.textContent = summary(request);
    const row = document.createElement("div");
    row.className = "row";
    const download = document.createElement("a");
    download.href = url;
    download.download = "kandinsky-" + job.id.slice(0, 8) + "-" + path.split("/").pop() + ".png";
    download.textContent = "Download";
    const again = document.createElement("button");
    again.type = "button";
    again.className = "again";
    again.textContent = "Use these settings again";
    again.addEventListener("click", () => restore(request));
    row.append(download, again);
    li.append(img, p, row);
    $("gallery").prepend(li);
  }
}

function restore(request) {
  $("mode-" + request.mode).checked = true;
  showMode();
  $("prompt").value = request.prompt || "";
  $("negative").value = request.negative_prompt || "";
  const set = (id, v) => { $(id).value = v === undefined ? "" : v; };
  set("width", request.width); set("height", request.height); set("steps", request.steps);
  set("prior-steps", request.prior_steps); set("guidance", request.guidance);
  set("num-images", request.num_images); set("seed", request.seed);
  $("sampler").value = request.sampler || "";
  $("karras").checked = !!request.karras;
  if (request.strength !== undefined) { $("strength").value = request.strength; $("strength").dispatchEvent(new Event("input")); }
  if (request.image) { state.image = request.image; $("mask-image").src = request.image; }
  if (request.hint) state.hint = request.hint;
  if (request.items) {
    $("items").replaceChildren();
    for (const item of request.items) addItem(item.text !== undefined ? "text-item" : "image-item", item);
  }
  $("prompt").focus();
  setStatus("Settings restored: change what you like and generate.");
}

// --- start --------------------------------------------------------------------------------
$("form").addEventListener("submit", generate);
$("cancel").addEventListener("click", cancel);
document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(e);
  if (e.key === "Escape" && state.job) cancel();
});

async function loadSamplers() {
  try {
    const list = await (await api("GET", "/sdapi/v1/samplers")).json();
    for (const s of list) {
      const option = document.createElement("option");
      option.value = option.textContent = s.name;
      $("sampler").appendChild(option);
    }
  } catch (_) { /* no key yet: the default sampler only */ }
}
keyInput.addEventListener("change", loadSamplers);
showMode();
loadSamplers();
