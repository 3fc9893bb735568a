// vemkit Annotator front end (anywidget ESM): one section on a canvas, brush / eraser / pan, zoom,
// contrast, class picker, undo and a prediction overlay. Every finished stroke is sent to Python at once
// as one custom message; Python writes it to the zarr store and sends back the stored label layer of the
// section, which replaces the locally drawn (pending) stroke. Nothing is batched.
//
// View transform (CSS pixels, relative to the canvas's top-left corner): screen = offset + scale * image,
// where image pixel (row, col) covers [col, col + 1) x [row, row + 1). The canvas element carries
// data-scale, data-offset-x and data-offset-y; the root carries data-ready, data-plane, data-index,
// data-labelled (labelled pixels of the shown section), data-pending and data-acked (last stored stroke).

const AXIS_OF = { xy: "z", xz: "y", yz: "x" };
const AXIS_INDEX = { xy: 0, xz: 1, yz: 2 };

function bytesOf(value) {
  if (!value) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return new Uint8Array(0);
}

async function inflate(bytes) {
  if (!bytes.length) return bytes;
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function h(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);
    else if (k.startsWith("data-") || k === "title" || k === "tabindex" || k === "type") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

// Ramer-Douglas-Peucker: drop stroke points closer than `tol` image pixels to the simplified line
// (a stroke stays the same set of pixels, with far fewer segments for Python to rasterise).
function simplify(points, tol) {
  if (points.length < 3) return points;
  const keep = new Uint8Array(points.length);
  keep[0] = keep[points.length - 1] = 1;
  const stack = [[0, points.length - 1]];
  while (stack.length) {
    const [a, b] = stack.pop();
    const [ar, ac] = points[a];
    const dr = points[b][0] - ar;
    const dc = points[b][1] - ac;
    const len = Math.hypot(dr, dc);
    let best = -1;
    let far = 0;
    for (let i = a + 1; i < b; i++) {
      const [pr, pc] = points[i];
      const d = len === 0 ? Math.hypot(pr - ar, pc - ac) : Math.abs(dc * (pr - ar) - dr * (pc - ac)) / len;
      if (d > far) {
        far = d;
        best = i;
      }
    }
    if (best >= 0 && far > tol) {
      keep[best] = 1;
      stack.push([a, best], [best, b]);
    }
  }
  return points.filter((_, i) => keep[i]);
}

function rgb(c, a = 1) {
  return `rgba(${c[0]}, ${c[1]}, ${c[2]}, ${a})`;
}

function render({ model, el }) {
  const viewId = Math.random().toString(36).slice(2, 10);
  let strokeSeq = 0;
  const listeners = [];
  const listen = (name, cb) => {
    model.on(name, cb);
    listeners.push([name, cb]);
  };

  // ------------------------------------------------------------------------------------ DOM
  const root = h("div", { class: "vemkit-ann", tabindex: "0", "data-lm-suppress-shortcuts": "true" });
  const toolButtons = {};
  const tools = h("div", { class: "vemkit-ann-group" });
  for (const [name, text, key] of [["brush", "Brush", "B"], ["erase", "Eraser", "E"], ["pan", "Pan", "P"]]) {
    const b = h("button", { type: "button", class: "vemkit-ann-btn", textContent: text, title: `${text} (${key})`, "data-tool": name });
    b.addEventListener("click", () => setModel("tool", name));
    toolButtons[name] = b;
    tools.append(b);
  }
  const classBox = h("div", { class: "vemkit-ann-group vemkit-ann-classes" });
  const brushInput = h("input", { type: "range", min: 1, max: 64, step: 1, class: "vemkit-ann-brush" });
  const brushText = h("span", { class: "vemkit-ann-value" });
  brushInput.addEventListener("input", () => setModel("brush", Number(brushInput.value)));
  const undoButton = h("button", { type: "button", class: "vemkit-ann-btn", textContent: "Undo", title: "Undo the last edit (Ctrl+Z)", "data-action": "undo" });
  undoButton.addEventListener("click", () => undo());
  const examplesButton = h("button", { type: "button", class: "vemkit-ann-btn", textContent: "Load example strokes", title: "Paint the example strokes this notebook offers (one edit: Undo removes them)", "data-action": "examples" });
  examplesButton.addEventListener("click", () => model.send({ type: "examples" }));
  const row1 = h("div", { class: "vemkit-ann-row" }, [
    tools, classBox,
    h("label", { class: "vemkit-ann-group", title: "Brush radius in image pixels ([ and ])" }, ["size ", brushInput, brushText]),
    undoButton,
    examplesButton,
  ]);

  const planeSelect = h("select", { class: "vemkit-ann-plane", title: "Plane" });
  planeSelect.addEventListener("change", () => setModel("plane", planeSelect.value));
  const indexInput = h("input", { type: "range", min: 0, step: 1, class: "vemkit-ann-index", title: "Section (↑/↓, PgUp/PgDn)" });
  const indexText = h("span", { class: "vemkit-ann-value vemkit-ann-index-text" });
  let indexTimer = null;
  indexInput.addEventListener("input", () => {
    indexText.textContent = `${indexInput.value} / ${indexInput.max}`;
    clearTimeout(indexTimer);
    indexTimer = setTimeout(() => setModel("index", Number(indexInput.value)), 60);
  });
  const loInput = h("input", { type: "range", class: "vemkit-ann-contrast", title: "Display minimum" });
  const hiInput = h("input", { type: "range", class: "vemkit-ann-contrast", title: "Display maximum" });
  const autoButton = h("button", { type: "button", class: "vemkit-ann-btn", textContent: "Auto", title: "Display range from the 1-99 percentiles of this section" });
  const labelAlpha = h("input", { type: "range", min: 0, max: 1, step: 0.05, class: "vemkit-ann-alpha", title: "Label opacity" });
  const overlayAlpha = h("input", { type: "range", min: 0, max: 1, step: 0.05, class: "vemkit-ann-alpha", title: "Prediction opacity" });
  const previewButton = h("button", { type: "button", class: "vemkit-ann-btn", textContent: "Refresh preview", "data-action": "predict" });
  previewButton.addEventListener("click", () => model.send({ type: "predict" }));
  const overlayGroup = h("label", { class: "vemkit-ann-group" }, ["prediction ", overlayAlpha, previewButton]);
  const row2 = h("div", { class: "vemkit-ann-row" }, [
    planeSelect,
    h("label", { class: "vemkit-ann-group" }, [h("span", { class: "vemkit-ann-axis" }), indexInput, indexText]),
    h("label", { class: "vemkit-ann-group" }, ["display ", loInput, hiInput, autoButton]),
    h("label", { class: "vemkit-ann-group" }, ["labels ", labelAlpha]),
    overlayGroup,
  ]);

  const canvas = h("canvas", { class: "vemkit-ann-canvas" });
  const wrap = h("div", { class: "vemkit-ann-wrap" }, [canvas]);
  const statusLine = h("div", { class: "vemkit-ann-status" });
  const infoLine = h("div", { class: "vemkit-ann-info" });
  const help = h("div", {
    class: "vemkit-ann-help",
    textContent: "drag: paint · Shift/middle/right-drag or Space: pan · wheel: zoom · F: fit · ↑/↓: section · 1-9: class · B/E/P: tool · [ ]: size · Ctrl+Z: undo",
  });
  root.append(row1, row2, wrap, h("div", { class: "vemkit-ann-row vemkit-ann-foot" }, [infoLine, statusLine]), help);
  el.append(root);
  const ctx = canvas.getContext("2d");

  // ---------------------------------------------------------------------------------- state
  const imgCanvas = document.createElement("canvas");
  const labCanvas = document.createElement("canvas");
  const ovCanvas = document.createElement("canvas");
  let shown = null; // {plane, index, key, H, W}
  let raw = null; // Uint8Array or Uint16Array of the shown section
  let contrast = model.get("contrast").slice();
  let labelsKey = "";
  let labelsVersion = 0;
  let labelsDecoding = false;
  let overlayKey = "";
  let overlayVersion = 0;
  let labelled = 0;
  let lastImage = null;
  let lastLabels = null;
  let lastOverlay = null;
  let lastLabelsKey = null;
  let lastOverlayKey = null;
  let pending = []; // strokes sent, not yet in the stored labels
  let acked = "";
  let drag = null;
  let pointer = null; // last pointer position (CSS px)
  let spaceDown = false;
  let view = { s: 1, ox: 0, oy: 0 };
  let fitted = true;
  let cssW = 0;
  let cssH = 0;

  function setModel(name, value) {
    model.set(name, value);
    model.save_changes();
    syncControls();
  }

  // --------------------------------------------------------------------------- image layer
  function lutFor(dtype) {
    const n = dtype === "uint16" ? 65536 : 256;
    const [lo, hi] = model.get("image_range");
    const step = dtype === "uint16" ? (hi - lo) / 65535 : 1;
    const base = dtype === "uint16" ? lo : 0;
    const [cmin, cmax] = contrast;
    const k = 255 / Math.max(cmax - cmin, 1e-12);
    const lut = new Uint8ClampedArray(n);
    for (let q = 0; q < n; q++) lut[q] = (base + q * step - cmin) * k;
    return lut;
  }

  function buildImage() {
    if (!raw || !shown) return;
    const { H, W } = shown;
    const lut = lutFor(model.get("image_dtype"));
    imgCanvas.width = W;
    imgCanvas.height = H;
    const ictx = imgCanvas.getContext("2d");
    const data = ictx.createImageData(W, H);
    const px = data.data;
    for (let i = 0, j = 0; i < W * H; i++, j += 4) {
      const g = lut[raw[i]];
      px[j] = g;
      px[j + 1] = g;
      px[j + 2] = g;
      px[j + 3] = 255;
    }
    ictx.putImageData(data, 0, 0);
  }

  function takeImage() {
    const value = model.get("image");
    const key = model.get("image_key");
    if (value === lastImage && shown && key === shown.key) return false; // two sections may hold the same bytes
    lastImage = value;
    const [H, W] = model.get("section_shape");
    const bytes = bytesOf(value);
    const dtype = model.get("image_dtype");
    const need = W * H * (dtype === "uint16" ? 2 : 1);
    if (!W || !H || bytes.length < need) return false;
    raw = dtype === "uint16" ? new Uint16Array(bytes.slice(0, need).buffer) : bytes;
    const [plane, index] = key.split(":");
    const reshape = !shown || shown.H !== H || shown.W !== W;
    shown = { plane, index: Number(index), key, H, W };
    buildImage();
    if (reshape || fitted) fit();
    return true;
  }

  // ------------------------------------------------------------------ labels and overlay
  function paintLabels(arr, key) {
    const [H, W] = model.get("section_shape");
    if (arr.length !== H * W) return;
    const colors = model.get("colors");
    labCanvas.width = W;
    labCanvas.height = H;
    const lctx = labCanvas.getContext("2d");
    const data = lctx.createImageData(W, H);
    const px = data.data;
    let n = 0;
    for (let i = 0, j = 0; i < arr.length; i++, j += 4) {
      const v = arr[i];
      if (v === 0) continue;
      const c = colors[v - 1] || [255, 255, 255];
      px[j] = c[0];
      px[j + 1] = c[1];
      px[j + 2] = c[2];
      px[j + 3] = 255;
      n++;
    }
    lctx.putImageData(data, 0, 0);
    labelled = n;
    labelsKey = key;
  }

  function dropAcked() {
    const [vid, seq] = acked.split("-");
    if (vid !== viewId) return;
    const n = Number(seq);
    pending = pending.filter((p) => p.seq > n);
  }

  function takeLabels() {
    const value = model.get("labels");
    const key = model.get("labels_key");
    if (value === lastLabels && key === lastLabelsKey) return;
    lastLabels = value;
    lastLabelsKey = key;
    const version = ++labelsVersion;
    labelsDecoding = true;
    inflate(bytesOf(value)).then((arr) => {
      if (version !== labelsVersion) return;
      labelsDecoding = false;
      paintLabels(arr, key);
      dropAcked();
      updateAttributes();
      requestRedraw();
    }).catch((err) => showStatus(`could not decode labels: ${err}`, true));
  }

  function takeOverlay() {
    const value = model.get("overlay");
    const key = model.get("overlay_key");
    if (value === lastOverlay && key === lastOverlayKey) return;
    lastOverlay = value;
    lastOverlayKey = key;
    const version = ++overlayVersion;
    const bytes = bytesOf(value);
    if (!key || !bytes.length) {
      overlayKey = "";
      requestRedraw();
      return;
    }
    inflate(bytes).then((arr) => {
      if (version !== overlayVersion) return;
      const [H, W] = model.get("section_shape");
      if (arr.length !== H * W * 4) return;
      ovCanvas.width = W;
      ovCanvas.height = H;
      const octx = ovCanvas.getContext("2d");
      octx.putImageData(new ImageData(new Uint8ClampedArray(arr.buffer, arr.byteOffset, arr.length), W, H), 0, 0);
      overlayKey = key;
      updateAttributes();
      requestRedraw();
    }).catch((err) => showStatus(`could not decode the prediction: ${err}`, true));
  }

  // -------------------------------------------------------------------------------- drawing
  function resize() {
    const rect = wrap.getBoundingClientRect();
    const w = Math.max(1, Math.round(rect.width));
    const hgt = Math.max(1, Math.round(rect.height));
    if (w === cssW && hgt === cssH) return;
    cssW = w;
    cssH = hgt;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
    if (fitted) fit();
    else requestRedraw();
  }

  function fit() {
    fitted = true;
    if (!shown || !cssW || !cssH) return requestRedraw();
    const s = Math.min(cssW / shown.W, cssH / shown.H);
    view = { s, ox: (cssW - shown.W * s) / 2, oy: (cssH - shown.H * s) / 2 };
    updateAttributes();
    requestRedraw();
  }

  let frame = null;
  function requestRedraw() {
    if (frame !== null) return;
    frame = requestAnimationFrame(() => {
      frame = null;
      draw();
    });
  }

  function strokePath(c, points, radius) {
    c.beginPath();
    if (points.length === 1) {
      c.arc(points[0][1] + 0.5, points[0][0] + 0.5, radius, 0, 2 * Math.PI);
      c.fill();
      return;
    }
    c.moveTo(points[0][1] + 0.5, points[0][0] + 0.5);
    for (const p of points.slice(1)) c.lineTo(p[1] + 0.5, p[0] + 0.5);
    c.lineWidth = 2 * radius;
    c.lineCap = "round";
    c.lineJoin = "round";
    c.stroke();
  }

  function drawStroke(stroke) {
    const colors = model.get("colors");
    const color = stroke.erase ? [255, 255, 255] : colors[stroke.label - 1] || [255, 255, 255];
    ctx.globalAlpha = stroke.erase ? 0.35 : Math.max(model.get("label_opacity"), 0.3);
    ctx.fillStyle = rgb(color);
    ctx.strokeStyle = rgb(color);
    strokePath(ctx, stroke.points, stroke.radius);
    ctx.globalAlpha = 1;
  }

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!shown) return;
    ctx.imageSmoothingEnabled = false;
    ctx.setTransform(dpr * view.s, 0, 0, dpr * view.s, dpr * view.ox, dpr * view.oy);
    ctx.drawImage(imgCanvas, 0, 0);
    if (overlayKey === shown.key && model.get("overlay_opacity") > 0) {
      ctx.globalAlpha = model.get("overlay_opacity");
      ctx.drawImage(ovCanvas, 0, 0);
    }
    if (labelsKey === shown.key) {
      ctx.globalAlpha = model.get("label_opacity");
      ctx.drawImage(labCanvas, 0, 0);
    }
    ctx.globalAlpha = 1;
    for (const p of pending) if (p.key === shown.key) drawStroke(p);
    if (drag && drag.mode === "paint") drawStroke(drag.stroke);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const tool = model.get("tool");
    if (pointer && tool !== "pan" && !spaceDown && !(drag && drag.mode === "pan")) {
      ctx.beginPath();
      ctx.arc(pointer.x, pointer.y, Math.max(model.get("brush") * view.s, 1), 0, 2 * Math.PI);
      ctx.lineWidth = 1;
      ctx.strokeStyle = tool === "erase" ? "rgba(255,255,255,0.9)" : rgb(model.get("colors")[model.get("label") - 1] || [255, 255, 255], 0.95);
      ctx.stroke();
    }
  }

  // ---------------------------------------------------------------------------- attributes
  function updateAttributes() {
    canvas.dataset.scale = String(view.s);
    canvas.dataset.offsetX = String(view.ox);
    canvas.dataset.offsetY = String(view.oy);
    root.dataset.ready = shown && labelsKey === shown.key ? "1" : "0";
    root.dataset.plane = shown ? shown.plane : "";
    root.dataset.index = shown ? String(shown.index) : "";
    root.dataset.labelled = String(labelsKey && shown && labelsKey === shown.key ? labelled : 0);
    root.dataset.pending = String(pending.length);
    root.dataset.acked = acked;
    root.dataset.overlay = shown && overlayKey === shown.key ? "1" : "0";
    if (shown) {
      const n = model.get("shape")[AXIS_INDEX[shown.plane]];
      infoLine.textContent = `${AXIS_OF[shown.plane]} ${shown.index} / ${n - 1} · ${shown.W} × ${shown.H} px · ` +
        `${labelled.toLocaleString()} labelled · zoom ${view.s.toFixed(2)}` + (pending.length ? ` · saving ${pending.length}…` : "");
    }
  }

  function showStatus(text, isError = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("vemkit-ann-error", isError || text.startsWith("⚠"));
  }

  // ------------------------------------------------------------------------------ controls
  function syncControls() {
    const tool = model.get("tool");
    for (const [name, b] of Object.entries(toolButtons)) b.classList.toggle("vemkit-ann-active", name === tool);
    const classes = model.get("classes");
    const colors = model.get("colors");
    const label = model.get("label");
    if (classBox.childElementCount !== classes.length) {
      classBox.replaceChildren();
      classes.forEach((name, i) => {
        const value = i + 1;
        const b = h("button", { type: "button", class: "vemkit-ann-btn vemkit-ann-class", title: `${name} (${value <= 9 ? value : ""})`, "data-class-value": String(value) }, [
          h("span", { class: "vemkit-ann-swatch", style: { background: rgb(colors[i] || [255, 255, 255]) } }),
          name,
        ]);
        b.addEventListener("click", () => {
          model.set("label", value);
          if (model.get("tool") !== "brush") model.set("tool", "brush");
          model.save_changes();
          syncControls();
        });
        classBox.append(b);
      });
    }
    for (const b of classBox.children) b.classList.toggle("vemkit-ann-active", Number(b.dataset.classValue) === label && tool === "brush");
    brushInput.value = model.get("brush");
    brushText.textContent = `${model.get("brush")} px`;
    const planes = model.get("planes");
    if (planeSelect.childElementCount !== planes.length) planeSelect.replaceChildren(...planes.map((p) => h("option", { value: p, textContent: p })));
    planeSelect.value = model.get("plane");
    planeSelect.style.display = planes.length > 1 ? "" : "none";
    const plane = model.get("plane");
    const n = model.get("shape")[AXIS_INDEX[plane]];
    indexInput.max = String(n - 1);
    indexInput.value = String(model.get("index"));
    indexInput.disabled = n <= 1;
    indexText.textContent = `${model.get("index")} / ${n - 1}`;
    row2.querySelector(".vemkit-ann-axis").textContent = `${AXIS_OF[plane]} `;
    const [vlo, vhi] = model.get("value_range");
    const step = (vhi - vlo) / 1000 || 1;
    for (const input of [loInput, hiInput]) {
      input.min = String(vlo);
      input.max = String(vhi);
      input.step = String(step);
    }
    loInput.value = String(contrast[0]);
    hiInput.value = String(contrast[1]);
    labelAlpha.value = model.get("label_opacity");
    overlayAlpha.value = model.get("overlay_opacity");
    overlayGroup.style.display = model.get("has_predictor") || model.get("overlay_key") ? "" : "none";
    previewButton.style.display = model.get("has_predictor") ? "" : "none";
    examplesButton.style.display = model.get("has_examples") ? "" : "none";
    previewButton.disabled = model.get("busy");
    previewButton.textContent = model.get("busy") ? "Computing…" : "Refresh preview";
    wrap.style.height = `${model.get("height")}px`;
    canvas.style.cursor = tool === "pan" ? "grab" : "crosshair";
  }

  function setContrast(lo, hi, save) {
    if (hi <= lo) hi = lo + (model.get("value_range")[1] - model.get("value_range")[0]) / 1000 || lo + 1;
    contrast = [lo, hi];
    buildImage();
    requestRedraw();
    if (save) setModel("contrast", contrast);
  }
  loInput.addEventListener("input", () => setContrast(Math.min(Number(loInput.value), contrast[1]), contrast[1], false));
  hiInput.addEventListener("input", () => setContrast(contrast[0], Math.max(Number(hiInput.value), contrast[0]), false));
  loInput.addEventListener("change", () => setModel("contrast", contrast));
  hiInput.addEventListener("change", () => setModel("contrast", contrast));
  autoButton.addEventListener("click", () => {
    if (!raw) return;
    const dtype = model.get("image_dtype");
    const n = dtype === "uint16" ? 65536 : 256;
    const hist = new Uint32Array(n);
    for (let i = 0; i < raw.length; i++) hist[raw[i]]++;
    const pick = (frac) => {
      const target = frac * raw.length;
      let acc = 0;
      for (let q = 0; q < n; q++) {
        acc += hist[q];
        if (acc >= target) return q;
      }
      return n - 1;
    };
    const [lo, hi] = model.get("image_range");
    const toValue = (q) => (dtype === "uint16" ? lo + (q * (hi - lo)) / 65535 : q);
    setContrast(toValue(pick(0.01)), toValue(pick(0.99)), true);
  });
  labelAlpha.addEventListener("input", () => setModel("label_opacity", Number(labelAlpha.value)));
  overlayAlpha.addEventListener("input", () => setModel("overlay_opacity", Number(overlayAlpha.value)));

  function stepIndex(delta) {
    const plane = model.get("plane");
    const n = model.get("shape")[AXIS_INDEX[plane]];
    const next = Math.min(Math.max(model.get("index") + delta, 0), n - 1);
    if (next !== model.get("index")) setModel("index", next);
  }

  function undo() {
    model.send({ type: "undo" });
  }

  // ------------------------------------------------------------------------------- pointer
  function toImage(e) {
    const rect = canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const y = e.clientY - rect.top;
    return { x, y, row: (y - view.oy) / view.s - 0.5, col: (x - view.ox) / view.s - 0.5 };
  }

  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointerdown", (e) => {
    root.focus({ preventScroll: true });
    if (!shown) return;
    const p = toImage(e);
    const pan = e.button === 1 || e.button === 2 || e.shiftKey || e.altKey || spaceDown || model.get("tool") === "pan";
    if (pan) {
      drag = { mode: "pan", x: p.x, y: p.y, ox: view.ox, oy: view.oy };
      canvas.style.cursor = "grabbing";
    } else if (e.button === 0) {
      const erase = model.get("tool") === "erase";
      drag = {
        mode: "paint",
        stroke: { points: [[p.row, p.col]], radius: model.get("brush"), label: erase ? 0 : model.get("label"), erase, key: shown.key, plane: shown.plane, index: shown.index },
      };
    } else return;
    canvas.setPointerCapture(e.pointerId);
    e.preventDefault();
    requestRedraw();
  });
  canvas.addEventListener("pointermove", (e) => {
    const p = toImage(e);
    pointer = { x: p.x, y: p.y };
    if (drag && drag.mode === "pan") {
      view.ox = drag.ox + p.x - drag.x;
      view.oy = drag.oy + p.y - drag.y;
      fitted = false;
      updateAttributes();
    } else if (drag && drag.mode === "paint") {
      const pts = drag.stroke.points;
      const last = pts[pts.length - 1];
      const d = Math.hypot(p.row - last[0], p.col - last[1]);
      if (d * view.s >= 1 && d >= 0.25) pts.push([p.row, p.col]);
    }
    requestRedraw();
  });
  const finish = (e) => {
    if (!drag) return;
    if (canvas.hasPointerCapture(e.pointerId)) canvas.releasePointerCapture(e.pointerId);
    if (drag.mode === "paint") {
      const s = drag.stroke;
      s.points = simplify(s.points, 0.2);
      const seq = ++strokeSeq;
      const id = `${viewId}-${seq}`;
      pending.push({ ...s, id, seq });
      model.send({ type: "stroke", id, points: s.points, radius: s.radius, label: s.label, erase: s.erase, plane: s.plane, index: s.index });
    }
    drag = null;
    syncControls();
    updateAttributes();
    requestRedraw();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish); // a cancelled stroke is still sent: nothing painted is lost
  canvas.addEventListener("pointerleave", () => {
    pointer = null;
    requestRedraw();
  });
  canvas.addEventListener("wheel", (e) => {
    if (!shown) return;
    e.preventDefault();
    const p = toImage(e);
    const factor = Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015));
    const s = Math.min(Math.max(view.s * factor, 0.05), 64);
    view.ox = p.x - ((p.x - view.ox) * s) / view.s;
    view.oy = p.y - ((p.y - view.oy) * s) / view.s;
    view.s = s;
    fitted = false;
    updateAttributes();
    requestRedraw();
  }, { passive: false });

  // ------------------------------------------------------------------------------ keyboard
  root.addEventListener("keydown", (e) => {
    if (e.target !== root && e.target !== canvas && e.target.tagName !== "BUTTON") {
      e.stopPropagation(); // sliders and the plane selector use their keys; the notebook must not
      return;
    }
    const k = e.key;
    let handled = true;
    if ((e.ctrlKey || e.metaKey) && (k === "z" || k === "Z")) undo();
    else if (e.ctrlKey || e.metaKey || e.altKey) handled = false;
    else if (k === "ArrowUp" || k === "PageUp" || k === ".") stepIndex(+1);
    else if (k === "ArrowDown" || k === "PageDown" || k === ",") stepIndex(-1);
    else if (k === "b" || k === "B") setModel("tool", "brush");
    else if (k === "e" || k === "E") setModel("tool", "erase");
    else if (k === "p" || k === "P") setModel("tool", "pan");
    else if (k === "f" || k === "F") fit();
    else if (k === "[") setModel("brush", Math.max(1, model.get("brush") - 1));
    else if (k === "]") setModel("brush", Math.min(64, model.get("brush") + 1));
    else if (k === " ") {
      spaceDown = true;
      canvas.style.cursor = "grab";
    } else if (/^[1-9]$/.test(k) && Number(k) <= model.get("classes").length) {
      model.set("label", Number(k));
      model.set("tool", "brush");
      model.save_changes();
      syncControls();
    } else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
      requestRedraw();
    }
  });
  root.addEventListener("keyup", (e) => {
    if (e.key === " ") {
      spaceDown = false;
      syncControls();
      e.stopPropagation();
    }
  });

  // --------------------------------------------------------------------------- model events
  let syncQueued = false;
  function sync() {
    syncQueued = false;
    const newImage = takeImage();
    takeLabels();
    takeOverlay();
    acked = model.get("last_stroke");
    if (!labelsDecoding) dropAcked();
    if (newImage) contrastFromModel(false);
    syncControls();
    updateAttributes();
    requestRedraw();
  }
  function queueSync() {
    if (syncQueued) return;
    syncQueued = true;
    queueMicrotask(sync);
  }
  function contrastFromModel(rebuild = true) {
    const c = model.get("contrast");
    if (c[0] !== contrast[0] || c[1] !== contrast[1]) {
      contrast = c.slice();
      if (rebuild) buildImage();
    }
  }
  for (const name of ["image", "image_key", "labels", "labels_key", "last_stroke", "overlay", "overlay_key", "section_shape"]) listen(`change:${name}`, queueSync);
  listen("change:contrast", () => {
    contrastFromModel(true);
    syncControls();
    requestRedraw();
  });
  for (const name of ["tool", "label", "brush", "plane", "index", "planes", "classes", "colors", "value_range", "has_predictor", "has_examples", "busy", "height", "label_opacity", "overlay_opacity"]) {
    listen(`change:${name}`, () => {
      syncControls();
      requestRedraw();
    });
  }
  listen("change:colors", () => {
    classBox.replaceChildren();
    lastLabelsKey = null;
    queueSync();
  });
  listen("change:status", () => showStatus(model.get("status")));
  listen("msg:custom", (msg) => {
    if (msg && msg.type === "error") {
      pending = pending.filter((p) => p.id !== msg.id);
      showStatus(`⚠ ${msg.message}`, true);
      updateAttributes();
      requestRedraw();
    }
  });

  const observer = new ResizeObserver(() => resize());
  observer.observe(wrap);
  syncControls();
  showStatus(model.get("status"));
  sync();
  resize();

  return () => {
    observer.disconnect();
    clearTimeout(indexTimer);
    if (frame !== null) cancelAnimationFrame(frame);
    for (const [name, cb] of listeners) model.off(name, cb);
  };
}

export default { render };
