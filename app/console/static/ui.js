// DOM helpers: elements are built, never parsed from strings, so a key or bucket
// name is always text (no markup injection).

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function replace(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${UNITS[unit]}`;
}

export function when(value) {
  if (value === null || value === undefined || value === "") return "–";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

// The status line (an ARIA live region): what just happened, or what failed.
export function say(message, kind = "info") {
  const line = document.getElementById("status");
  line.className = `status ${kind}`;
  line.textContent = message;
}

export function fail(error) {
  say(error && error.message ? error.message : String(error), "error");
}

// Run `work` from a button: disabled meanwhile, errors shown on the status line.
export function action(label, work, attrs = {}) {
  const button = h("button", { type: "button", ...attrs }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await work(button);
    } catch (error) {
      fail(error);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

export function field(label, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

// `headings`: text, or [text, class] ("hide-narrow": a column a phone goes without).
export function table(headings, rows, caption) {
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, headings.map((t) => (Array.isArray(t)
        ? h("th", { scope: "col", class: t[1] }, t[0]) : h("th", { scope: "col" }, t))))),
      h("tbody", {}, rows)));
}
