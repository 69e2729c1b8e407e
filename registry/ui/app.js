// The dashboard's shell: a hash router, the token form, and a refresh every 5 s that builds
// the page off-screen and swaps it in whole.
import { NeedToken, setToken } from "./api.js";
import { el } from "./dom.js";
import { topology } from "./graph.js";
import { config, overview, service } from "./pages.js";
import { TapView, chooser } from "./tap.js";

const REFRESH_MS = 5000;
const view = document.getElementById("view");
const status = document.getElementById("status");
const form = document.getElementById("token-form");
const windowSelect = document.getElementById("window");
let generation = 0;
let timer = null;
let tap = null;

function route() {
  const [, page = "", arg = ""] = location.hash.replace(/^#/, "").split("/");
  return { page, arg: decodeURIComponent(arg) };
}

async function render() {
  const { page, arg } = route();
  const window = windowSelect.value;
  if (page === "service" && arg) return service(arg, window);
  if (page === "topology") return topology(window);
  if (page === "config") return config();
  if (page === "tap") return arg ? null : chooser();
  return overview(window);
}

async function refresh(gen) {
  try {
    const content = await render();
    if (gen !== generation) return; // the user moved on while this loaded
    if (content) view.replaceChildren(...content.filter(Boolean));
    form.hidden = true;
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.className = "status";
  } catch (err) {
    if (gen !== generation) return;
    if (err instanceof NeedToken) {
      form.hidden = false;
      document.getElementById("token-reason").textContent = err.message;
    }
    status.textContent = err.message;
    status.className = "status error";
  }
  if (gen === generation && route().page !== "tap") timer = setTimeout(() => refresh(gen), REFRESH_MS);
}

function navigate() {
  generation++;
  clearTimeout(timer);
  if (tap) tap.running = false;
  tap = null;
  const { page, arg } = route();
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("here", a.getAttribute("href").split("/")[1] === page);
  }
  if (page === "tap" && arg) {
    const current = (tap = new TapView(arg));
    view.replaceChildren(...current.render().filter(Boolean));
    current.poll(() => {
      if (tap === current) view.replaceChildren(...current.render().filter(Boolean));
    });
    return;
  }
  view.replaceChildren(el("p", { class: "empty" }, "loading…"));
  refresh(generation);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(document.getElementById("token").value.trim());
  document.getElementById("token").value = "";
  navigate();
});
windowSelect.addEventListener("change", navigate);
window.addEventListener("hashchange", navigate);
navigate();
