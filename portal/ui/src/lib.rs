//! The portal's single-page app (Yew, wasm32): the staff workspace of VPVKAC case work
//! over `/api/portal`. Latvian by default, English by a switch; server-side sessions only
//! (the page never holds a token); every decision about who sees what is the server's.
#![cfg(target_arch = "wasm32")]

mod api;
mod i18n;
mod pages;
mod security;

use i18n::{Lang, tr};
use wasm_bindgen::prelude::*;
use yew::prelude::*;

/// Where the app is, from the address bar.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Cases,
    NewCase,
    Case(u64),
    Clients,
    Reports,
    Admin,
    Security,
}

impl Route {
    fn parse(path: &str) -> Self {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            ["cases", "new"] => Route::NewCase,
            ["cases", id] => id.parse().map_or(Route::Cases, Route::Case),
            ["clients"] => Route::Clients,
            ["reports"] => Route::Reports,
            ["admin"] => Route::Admin,
            ["security"] => Route::Security,
            _ => Route::Cases,
        }
    }

    fn path(&self) -> String {
        match self {
            Route::Cases => "/".into(),
            Route::NewCase => "/cases/new".into(),
            Route::Case(id) => format!("/cases/{id}"),
            Route::Clients => "/clients".into(),
            Route::Reports => "/reports".into(),
            Route::Admin => "/admin".into(),
            Route::Security => "/security".into(),
        }
    }
}

/// What every page gets: the language, the signed-in user and a way to move.
#[derive(Debug, Clone, PartialEq)]
pub struct Ctx {
    pub lang: Lang,
    pub me: api::Me,
    pub go: Callback<Route>,
}

fn current_route() -> Route {
    let path = web_sys::window()
        .and_then(|w| w.location().pathname().ok())
        .unwrap_or_default();
    Route::parse(&path)
}

fn stored_lang() -> Lang {
    web_sys::window()
        .and_then(|w| w.local_storage().ok().flatten())
        .and_then(|s| s.get_item("kopa-lang").ok().flatten())
        .map_or(Lang::Lv, |v| if v == "en" { Lang::En } else { Lang::Lv })
}

fn set_document_lang(lang: Lang) {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
    {
        let _ = el.set_attribute("lang", lang.code());
    }
}

#[function_component(App)]
fn app() -> Html {
    let route = use_state(current_route);
    let lang = use_state(stored_lang);
    let me = use_state(|| None::<api::Me>);
    let failed = use_state(|| None::<String>);

    {
        let (me, failed, route) = (me.clone(), failed.clone(), route.clone());
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                match api::get::<api::Me>("/api/portal/me").await {
                    Ok(m) => me.set(Some(m)),
                    Err(e) => failed.set(Some(e)),
                }
            });
            // Back and forward buttons.
            let closure = Closure::<dyn Fn()>::new(move || route.set(current_route()));
            if let Some(w) = web_sys::window() {
                w.set_onpopstate(Some(closure.as_ref().unchecked_ref()));
            }
            closure.forget();
            || ()
        });
    }
    set_document_lang(*lang);

    let go = {
        let route = route.clone();
        Callback::from(move |to: Route| {
            if let Some(h) = web_sys::window().and_then(|w| w.history().ok()) {
                let _ = h.push_state_with_url(&JsValue::NULL, "", Some(&to.path()));
            }
            route.set(to);
            focus_main();
        })
    };
    let switch = {
        let lang = lang.clone();
        Callback::from(move |_| {
            let next = match *lang {
                Lang::Lv => Lang::En,
                Lang::En => Lang::Lv,
            };
            if let Some(s) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
                let _ = s.set_item("kopa-lang", next.code());
            }
            lang.set(next);
        })
    };
    let l = *lang;
    let Some(user) = (*me).clone() else {
        return html! {
            <main id="main" class="loading" aria-busy="true">
                <p role="status">{ failed.as_deref().map_or_else(|| tr(l, "Ielādē…", "Loading…").to_owned(), str::to_owned) }</p>
            </main>
        };
    };
    let officer = ["security_officer", "auditor", "platform_admin"]
        .iter()
        .any(|r| user.has(r));
    let ctx = Ctx {
        lang: l,
        me: user.clone(),
        go: go.clone(),
    };
    let nav_link = |to: Route, lv: &str, en: &str| {
        let current = std::mem::discriminant(&*route) == std::mem::discriminant(&to)
            || (matches!(*route, Route::Case(_) | Route::NewCase) && to == Route::Cases);
        let href = to.path();
        let go = go.clone();
        let onclick = Callback::from(move |e: MouseEvent| {
            e.prevent_default();
            go.emit(to.clone());
        });
        html! {
            <li><a {href} {onclick} aria-current={ current.then_some("page") }>{ tr(l, lv, en) }</a></li>
        }
    };
    let page = match (*route).clone() {
        Route::Cases => html! { <pages::Cases ctx={ctx.clone()} /> },
        Route::NewCase => html! { <pages::NewCasePage ctx={ctx.clone()} /> },
        Route::Case(id) => html! { <pages::CasePage ctx={ctx.clone()} {id} /> },
        Route::Clients => html! { <pages::Clients ctx={ctx.clone()} /> },
        Route::Reports => html! { <pages::Reports ctx={ctx.clone()} /> },
        Route::Admin => html! { <pages::Admin ctx={ctx.clone()} /> },
        Route::Security => html! { <security::Security ctx={ctx.clone()} /> },
    };
    html! {
        <>
            <a class="skip" href="#main">{ tr(l, "Pāriet uz saturu", "Skip to content") }</a>
            <header class="top">
                <span class="brand">{ "Kopa · " }{ tr(l, "VPVKAC portāls", "One-stop centre portal") }</span>
                <span class="who" id="user">{ user.name.clone() }</span>
                <button type="button" class="lang" onclick={switch} id="lang-switch"
                    aria-label={ tr(l, "Switch to English", "Pārslēgt uz latviešu valodu") }>
                    { tr(l, "English", "Latviešu") }
                </button>
                <a class="logout" href="/auth/portal/logout">{ tr(l, "Iziet", "Sign out") }</a>
            </header>
            <nav aria-label={ tr(l, "Galvenā navigācija", "Main navigation") }>
                <ul>
                    { nav_link(Route::Cases, "Lietas", "Cases") }
                    { nav_link(Route::Clients, "Klienti", "Clients") }
                    { nav_link(Route::Reports, "Pārskati", "Reports") }
                    { nav_link(Route::Admin, "Administrēšana", "Administration") }
                    if officer {
                        { nav_link(Route::Security, "Drošība", "Security") }
                    }
                </ul>
            </nav>
            <main id="main" tabindex="-1">{ page }</main>
            <footer><p>{ tr(l, "Kopa — pašvaldību koplietošanas platforma", "Kopa — the municipalities' shared platform") }</p></footer>
        </>
    }
}

/// Moves keyboard and screen-reader focus to the new page's content.
fn focus_main() {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("main"))
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = el.focus();
    }
}

/// Starts the app in `<div id="app">`.
#[wasm_bindgen(start)]
pub fn start() {
    if let Some(root) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("app"))
    {
        yew::Renderer::<App>::with_root(root).render();
    }
}
