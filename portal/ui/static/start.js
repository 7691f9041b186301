// Loads the portal's WebAssembly app (a module script: the page's CSP allows no inline code).
import init from "/ui/kopa_portal_ui.js";
init({ module_or_path: "/ui/kopa_portal_ui_bg.wasm" });
