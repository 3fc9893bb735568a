// vemkit prompt layer for the Annotator (SAM clicks and boxes). Appended to annotator.js by
// vemkit._prompt.PromptAnnotator, whose render() it wraps: it reuses inflate() and h() from there and
// reads the view (scale, offset, plane, index) from the data attributes the Annotator keeps current.
// Prompt tool (S): click = point on the object, Ctrl/Cmd-click = point off it, drag = box;
// Enter = accept into the current class, Esc = reject; the propagate buttons carry an accepted mask
// to the next sections. Shift/middle/right-drag still pans and the wheel still zooms.

function installPrompt({ model, el }) {
  const root = el.querySelector(".vemkit-ann");
  const canvas = el.querySelector(".vemkit-ann-canvas");
  if (!root || !canvas) return () => {};
  const wrap = canvas.parentElement;
  wrap.style.position = "relative";
  const layer = h("canvas", { class: "vemkit-ann-prompt-layer" });
  layer.style.cssText = "position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none";
  wrap.append(layer);
  const maskCanvas = document.createElement("canvas");
  let maskKey = "";
  let points = []; // [[row, col, label]]
  let drag = null;

  const toggle = h("button", { type: "button", class: "vemkit-ann-btn", textContent: "Prompt (S)", title: "SAM prompt tool: click the object, Ctrl-click outside it, drag a box", "data-action": "prompt" });
  const accept = h("button", { type: "button", class: "vemkit-ann-btn", textContent: "Accept ⏎", "data-action": "prompt-accept" });
  const reject = h("button", { type: "button", class: "vemkit-ann-btn", textContent: "Reject Esc", "data-action": "prompt-reject" });
  const up = h("button", { type: "button", class: "vemkit-ann-btn", textContent: "Propagate ↑", title: "Carry the accepted mask to the next sections", "data-action": "prompt-up" });
  const down = h("button", { type: "button", class: "vemkit-ann-btn", textContent: "Propagate ↓", "data-action": "prompt-down" });
  const info = h("span", { class: "vemkit-ann-value vemkit-ann-prompt-info" });
  const row = h("div", { class: "vemkit-ann-row vemkit-ann-prompt" }, [toggle, accept, reject, up, down, info]);
  root.insertBefore(row, wrap);

  const setActive = (on) => {
    model.set("prompt_active", on);
    if (on) model.set("tool", "pan"); // the Annotator's own tool must not paint under a prompt click
    else model.set("tool", "brush");
    model.save_changes();
  };
  toggle.addEventListener("click", () => setActive(!model.get("prompt_active")));
  accept.addEventListener("click", () => model.send({ type: "prompt_accept" }));
  reject.addEventListener("click", () => { points = []; model.send({ type: "prompt_reject" }); });
  up.addEventListener("click", () => model.send({ type: "prompt_propagate", direction: 1 }));
  down.addEventListener("click", () => model.send({ type: "prompt_propagate", direction: -1 }));

  function viewOf() {
    return { s: Number(canvas.dataset.scale), ox: Number(canvas.dataset.offsetX), oy: Number(canvas.dataset.offsetY) };
  }
  function current() {
    return { plane: root.dataset.plane, index: Number(root.dataset.index) };
  }
  function toImage(e) {
    const rect = canvas.getBoundingClientRect();
    const v = viewOf();
    const x = e.clientX - rect.left;
    const y = e.clientY - rect.top;
    return { x, y, row: (y - v.oy) / v.s - 0.5, col: (x - v.ox) / v.s - 0.5 };
  }

  // capture phase on the wrapper: runs before the Annotator's own canvas handlers
  wrap.addEventListener("pointerdown", (e) => {
    if (!model.get("prompt_active") || e.button !== 0 || e.shiftKey || e.altKey) return;
    e.stopPropagation();
    e.preventDefault();
    root.focus({ preventScroll: true });
    const p = toImage(e);
    drag = { start: p, end: p, negative: e.ctrlKey || e.metaKey };
  }, { capture: true });
  window.addEventListener("pointermove", onMove);
  window.addEventListener("pointerup", onUp);
  function onMove(e) {
    if (!drag) return;
    drag.end = toImage(e);
    draw();
  }
  function onUp(e) {
    if (!drag) return;
    const { start, end, negative } = drag;
    drag = null;
    const where = current();
    const moved = Math.hypot(end.x - start.x, end.y - start.y) > 4;
    let box = null;
    if (moved) {
      box = [Math.min(start.row, end.row), Math.min(start.col, end.col), Math.max(start.row, end.row), Math.max(start.col, end.col)];
    } else {
      points.push([Math.round(start.row), Math.round(start.col), negative ? 0 : 1]);
    }
    if (!box && model.get("prompt_box").length === 4) box = model.get("prompt_box");
    model.send({ type: "prompt", points, box, plane: where.plane, index: where.index });
    draw();
  }

  root.addEventListener("keydown", (e) => {
    if (e.target !== root && e.target !== canvas && e.target.tagName !== "BUTTON") return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    let handled = true;
    if (e.key === "s" || e.key === "S") setActive(!model.get("prompt_active"));
    else if (e.key === "Enter" && model.get("prompt_active")) model.send({ type: "prompt_accept" });
    else if (e.key === "Escape" && model.get("prompt_active")) { points = []; model.send({ type: "prompt_reject" }); }
    else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
    }
  }, { capture: true });

  async function takeMask() {
    const key = model.get("prompt_key");
    const bytes = bytesOf(model.get("prompt_mask"));
    if (!key || !bytes.length) {
      maskKey = "";
      root.dataset.promptPixels = "0";
      return draw();
    }
    const arr = await inflate(bytes);
    const [plane] = key.split(":");
    const shape = model.get("section_shape");
    const H = shape[0], W = shape[1];
    if (arr.length !== H * W || plane !== current().plane) return;
    maskCanvas.width = W;
    maskCanvas.height = H;
    const rgba = new Uint8ClampedArray(W * H * 4);
    let n = 0;
    for (let i = 0; i < arr.length; i++) {
      if (!arr[i]) continue;
      n++;
      rgba.set([0, 229, 255, 255], 4 * i);
    }
    maskCanvas.getContext("2d").putImageData(new ImageData(rgba, W, H), 0, 0);
    maskKey = key;
    root.dataset.promptPixels = String(n);
    root.dataset.promptKey = key;
    draw();
  }

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    const rect = canvas.getBoundingClientRect();
    layer.width = Math.round(rect.width * dpr);
    layer.height = Math.round(rect.height * dpr);
    const c = layer.getContext("2d");
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.clearRect(0, 0, layer.width, layer.height);
    const v = viewOf();
    const where = current();
    const here = `${where.plane}:${where.index}`;
    c.setTransform(dpr * v.s, 0, 0, dpr * v.s, dpr * v.ox, dpr * v.oy);
    c.imageSmoothingEnabled = false;
    if (maskKey === here) {
      c.globalAlpha = 0.45;
      c.drawImage(maskCanvas, 0, 0);
      c.globalAlpha = 1;
    }
    if (model.get("prompt_key") === here || points.length) {
      for (const [r, col, lab] of model.get("prompt_points").length ? model.get("prompt_points") : points) {
        c.beginPath();
        c.arc(col + 0.5, r + 0.5, 4 / v.s, 0, 2 * Math.PI);
        c.fillStyle = lab ? "rgba(60,220,90,0.95)" : "rgba(240,60,60,0.95)";
        c.fill();
      }
      const b = model.get("prompt_box");
      if (b.length === 4) {
        c.lineWidth = 2 / v.s;
        c.strokeStyle = "rgba(0,229,255,0.95)";
        c.strokeRect(b[1] + 0.5, b[0] + 0.5, b[3] - b[1], b[2] - b[0]);
      }
    }
    if (drag) {
      c.setTransform(dpr, 0, 0, dpr, 0, 0);
      c.lineWidth = 1;
      c.strokeStyle = "rgba(0,229,255,0.95)";
      c.strokeRect(drag.start.x, drag.start.y, drag.end.x - drag.start.x, drag.end.y - drag.start.y);
    }
  }

  function syncControls() {
    const on = model.get("prompt_active");
    toggle.classList.toggle("vemkit-ann-active", on);
    root.dataset.prompt = on ? "1" : "0";
    info.textContent = model.get("prompt_info");
    for (const b of [accept, reject]) b.disabled = !model.get("prompt_key");
  }

  const handlers = [
    ["change:prompt_mask", takeMask], ["change:prompt_key", takeMask],
    ["change:prompt_points", draw], ["change:prompt_box", draw],
    ["change:prompt_active", syncControls], ["change:prompt_info", syncControls], ["change:prompt_key", syncControls],
    ["change:index", () => { points = []; draw(); }], ["change:plane", () => { points = []; draw(); }],
  ];
  for (const [name, cb] of handlers) model.on(name, cb);
  const watcher = new MutationObserver(() => draw()); // zoom, pan, section: the Annotator updates these
  watcher.observe(canvas, { attributes: true, attributeFilter: ["data-scale", "data-offset-x", "data-offset-y"] });
  watcher.observe(root, { attributes: true, attributeFilter: ["data-index", "data-plane"] });
  syncControls();
  takeMask();
  return () => {
    watcher.disconnect();
    window.removeEventListener("pointermove", onMove);
    window.removeEventListener("pointerup", onUp);
    for (const [name, cb] of handlers) model.off(name, cb);
  };
}

function renderWithPrompt(ctx) {
  const cleanup = render(ctx);
  const cleanupPrompt = installPrompt(ctx);
  return () => {
    cleanupPrompt();
    if (typeof cleanup === "function") cleanup();
  };
}

export default { render: renderWithPrompt };
