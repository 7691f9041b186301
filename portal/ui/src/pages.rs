//! The pages: case lists, a new case, one case, clients, reports, administration.

use crate::api::{
    self, Case, CaseDetail, Centre, Client, Institution, ReportRow, Service, Unmasked,
};
use crate::i18n::{self, Lang, tr};
use crate::{Ctx, Route};
use serde_json::json;
use web_sys::{HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub ctx: Ctx,
}

fn input_value(e: &Event) -> String {
    e.target_unchecked_into::<HtmlInputElement>().value()
}

fn select_value(e: &Event) -> String {
    e.target_unchecked_into::<HtmlSelectElement>().value()
}

/// A message for screen readers and eyes: errors are `alert`, the rest `status`.
pub(crate) fn notice(error: &Option<String>) -> Html {
    match error {
        Some(e) => html! { <p class="error" role="alert">{ e.clone() }</p> },
        None => html! {},
    }
}

pub(crate) fn spawn<F: std::future::Future<Output = ()> + 'static>(f: F) {
    wasm_bindgen_futures::spawn_local(f);
}

/// A link inside the app.
fn link(go: &Callback<Route>, to: Route, text: Html) -> Html {
    let href = to.path();
    let go = go.clone();
    let onclick = Callback::from(move |e: MouseEvent| {
        e.prevent_default();
        go.emit(to.clone());
    });
    html! { <a {href} {onclick}>{ text }</a> }
}

fn case_rows(ctx: &Ctx, cases: &[Case]) -> Html {
    let l = ctx.lang;
    cases
        .iter()
        .map(|c| {
            let due = c.due.map(i18n::datetime).unwrap_or_else(|| "—".into());
            let late = c.indicators.deadline_breached;
            html! {
                <tr class={ classes!(late.then_some("late")) }>
                    <th scope="row">{ link(&ctx.go, Route::Case(c.id), html! { { format!("#{}", c.id) } }) }</th>
                    <td>{ c.service_name.get(l) }<br/><small>{ c.service.clone() }</small></td>
                    <td>{ c.client.as_ref().map(|k| k.name.clone()).unwrap_or_else(|| "—".into()) }</td>
                    <td>{ i18n::channel(l, &c.channel) }</td>
                    <td><span class={ classes!("state", c.state.clone()) }>{ i18n::state(l, &c.state) }</span></td>
                    <td>{ i18n::datetime(c.stages.registered) }</td>
                    <td>{ due }{ if late { html! { <span class="badge">{ tr(l, " nokavēts", " overdue") }</span> } } else { html! {} } }</td>
                </tr>
            }
        })
        .collect()
}

// ---- case lists ------------------------------------------------------------------------

#[function_component(Cases)]
pub fn cases(p: &Props) -> Html {
    let ctx = &p.ctx;
    let l = ctx.lang;
    let view = use_state(|| {
        if ctx.me.front_office() {
            "queue".to_owned()
        } else {
            "all".to_owned()
        }
    });
    let text = use_state(String::new);
    let query = use_state(String::new);
    let state = use_state(String::new);
    let saved = use_state(Vec::<api::SavedFilter>::new);
    let filter_name = use_state(String::new);
    let saved_rev = use_state(|| 0_u32);
    {
        let saved = saved.clone();
        use_effect_with(*saved_rev, move |_| {
            spawn(async move {
                if let Ok(list) = api::get::<Vec<api::SavedFilter>>("/api/portal/filters").await {
                    saved.set(list);
                }
            });
            || ()
        });
    }
    let page = use_state(|| None::<api::CasePage>);
    let error = use_state(|| None::<String>);
    let more = use_state(|| None::<u64>);

    {
        let (page, error) = (page.clone(), error.clone());
        let deps = ((*view).clone(), (*query).clone(), (*state).clone(), *more);
        use_effect_with(deps, move |(view, q, state, before)| {
            let url = format!(
                "/api/portal/cases?{}",
                api::query(&[
                    ("view", view.clone()),
                    ("q", q.clone()),
                    ("state", state.clone()),
                    ("before", before.map(|b| b.to_string()).unwrap_or_default()),
                    ("limit", "50".into()),
                ])
            );
            let appending = before.is_some();
            let previous = (*page).clone();
            spawn(async move {
                match api::get::<api::CasePage>(&url).await {
                    Ok(mut got) => {
                        if appending && let Some(mut prev) = previous {
                            prev.cases.append(&mut got.cases);
                            prev.next = got.next;
                            got = prev;
                        }
                        page.set(Some(got));
                        error.set(None);
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
            || ()
        });
    }

    let tab = |key: &'static str, lv: &'static str, en: &'static str| {
        let (view, more) = (view.clone(), more.clone());
        let pressed = *view == key;
        let onclick = Callback::from(move |_| {
            more.set(None);
            view.set(key.to_owned());
        });
        html! { <button type="button" class="tab" aria-pressed={ pressed.to_string() } {onclick}>{ tr(l, lv, en) }</button> }
    };
    let onsubmit = {
        let (text, query, more) = (text.clone(), query.clone(), more.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            more.set(None);
            query.set((*text).clone());
        })
    };
    let oninput = {
        let text = text.clone();
        Callback::from(move |e: InputEvent| {
            text.set(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };
    let onstate = {
        let (state, more) = (state.clone(), more.clone());
        Callback::from(move |e: Event| {
            more.set(None);
            state.set(select_value(&e));
        })
    };
    // Saved filters: the list's query string under a name of the user's choosing.
    let save_filter = {
        let (view, query, state, filter_name, saved_rev, error) = (
            view.clone(),
            query.clone(),
            state.clone(),
            filter_name.clone(),
            saved_rev.clone(),
            error.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let name = (*filter_name).trim().to_owned();
            if name.is_empty() {
                return;
            }
            let q = api::query(&[
                ("view", (*view).clone()),
                ("q", (*query).clone()),
                ("state", (*state).clone()),
            ]);
            let body = json!({"name": name, "query": q});
            let (filter_name, saved_rev, error) =
                (filter_name.clone(), saved_rev.clone(), error.clone());
            spawn(async move {
                match api::put("/api/portal/filters", &body).await {
                    Ok(()) => {
                        filter_name.set(String::new());
                        saved_rev.set(*saved_rev + 1);
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    let apply = |f: &api::SavedFilter| {
        let (view, text, query, state, more, q) = (
            view.clone(),
            text.clone(),
            query.clone(),
            state.clone(),
            more.clone(),
            f.query.clone(),
        );
        Callback::from(move |_| {
            let (mut v, mut t, mut s) = ("all".to_owned(), String::new(), String::new());
            for pair in q.split('&') {
                let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
                let val = js_sys::decode_uri_component(val)
                    .map(String::from)
                    .unwrap_or_default();
                match k {
                    "view" => v = val,
                    "q" => t = val,
                    "state" => s = val,
                    _ => {}
                }
            }
            more.set(None);
            view.set(v);
            text.set(t.clone());
            query.set(t);
            state.set(s);
        })
    };
    let on_filter_name = {
        let filter_name = filter_name.clone();
        Callback::from(move |e: InputEvent| filter_name.set(input_value(&e)))
    };
    let load_more = {
        let (more, page) = (more.clone(), page.clone());
        Callback::from(move |_| more.set(page.as_ref().and_then(|p| p.next)))
    };
    let list = match page.as_ref() {
        None => html! { <p role="status">{ tr(l, "Ielādē…", "Loading…") }</p> },
        Some(p) if p.cases.is_empty() => {
            html! { <p role="status">{ tr(l, "Lietu nav.", "No cases.") }</p> }
        }
        Some(p) => html! {
            <>
            <p role="status" class="count">{ format!("{} {}", p.cases.len(), tr(l, "lietas", "cases")) }</p>
            <table class="cases">
                <caption class="sr-only">{ tr(l, "Lietas", "Cases") }</caption>
                <thead><tr>
                    <th scope="col">{ tr(l, "Nr.", "No.") }</th>
                    <th scope="col">{ tr(l, "Pakalpojums", "Service") }</th>
                    <th scope="col">{ tr(l, "Klients", "Client") }</th>
                    <th scope="col">{ tr(l, "Kanāls", "Channel") }</th>
                    <th scope="col">{ tr(l, "Stāvoklis", "State") }</th>
                    <th scope="col">{ tr(l, "Reģistrēta", "Registered") }</th>
                    <th scope="col">{ tr(l, "Termiņš", "Due") }</th>
                </tr></thead>
                <tbody>{ case_rows(ctx, &p.cases) }</tbody>
            </table>
            if p.next.is_some() {
                <button type="button" onclick={load_more}>{ tr(l, "Rādīt vairāk", "Show more") }</button>
            }
            </>
        },
    };
    html! {
        <>
            <div class="title-row">
                <h1>{ tr(l, "Lietas", "Cases") }</h1>
                if ctx.me.front_office() {
                    { link(&ctx.go, Route::NewCase, html! { <span class="button" id="new-case">{ tr(l, "Jauna lieta", "New case") }</span> }) }
                }
            </div>
            <div class="tabs" role="group" aria-label={ tr(l, "Skats", "View") }>
                { tab("mine", "Manas", "Mine") }
                { tab("queue", "Centra rinda", "Centre queue") }
                { tab("deadline", "Termiņš tuvu vai nokavēts", "Deadline near or passed") }
                { tab("all", "Visas", "All") }
            </div>
            <form class="filters" role="search" {onsubmit}>
                <label for="case-search">{ tr(l, "Meklēt (klients, pakalpojums, numurs)", "Search (client, service, number)") }</label>
                <input id="case-search" type="search" value={ (*text).clone() } {oninput} />
                <label for="case-state">{ tr(l, "Stāvoklis", "State") }</label>
                <select id="case-state" onchange={onstate}>
                    <option value="" selected={ state.is_empty() }>{ tr(l, "Jebkurš", "Any") }</option>
                    { for i18n::STATES.iter().map(|s| html! { <option value={ *s } selected={ *state == *s }>{ i18n::state(l, s) }</option> }) }
                </select>
                <button type="submit">{ tr(l, "Meklēt", "Search") }</button>
            </form>
            <div class="saved">
                if !saved.is_empty() {
                    <div class="tabs" role="group" aria-label={ tr(l, "Saglabātie filtri", "Saved filters") }>
                        { for saved.iter().map(|f| html! {
                            <button type="button" class="tab saved-filter" onclick={ apply(f) }>{ f.name.clone() }</button>
                        }) }
                    </div>
                }
                <form class="filters" onsubmit={save_filter}>
                    <label for="filter-name">{ tr(l, "Saglabāt šo skatu kā", "Save this view as") }</label>
                    <input id="filter-name" type="text" value={ (*filter_name).clone() } oninput={on_filter_name} />
                    <button type="submit">{ tr(l, "Saglabāt filtru", "Save filter") }</button>
                </form>
            </div>
            { notice(&error) }
            { list }
        </>
    }
}

// ---- a new case ------------------------------------------------------------------------

#[function_component(NewCasePage)]
pub fn new_case(p: &Props) -> Html {
    let ctx = p.ctx.clone();
    let l = ctx.lang;
    let services = use_state(Vec::<Service>::new);
    let service = use_state(String::new);
    let centre = use_state(|| ctx.me.centres.first().cloned().unwrap_or_default());
    let channel = use_state(|| "in_person".to_owned());
    let client_q = use_state(String::new);
    let found = use_state(Vec::<Client>::new);
    let client = use_state(|| None::<u64>);
    let new_name = use_state(String::new);
    let new_code = use_state(String::new);
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);

    {
        let (services, service, error) = (services.clone(), service.clone(), error.clone());
        use_effect_with((), move |_| {
            spawn(async move {
                match api::get::<Vec<Service>>("/api/portal/services").await {
                    Ok(list) => {
                        if let Some(first) = list.first() {
                            service.set(first.code.clone());
                        }
                        services.set(list);
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
            || ()
        });
    }
    let chosen = services.iter().find(|s| s.code == *service).cloned();
    let search = {
        let (client_q, found, error) = (client_q.clone(), found.clone(), error.clone());
        Callback::from(move |_| {
            let url = format!(
                "/api/portal/clients?{}",
                api::query(&[("q", (*client_q).clone())])
            );
            let (found, error) = (found.clone(), error.clone());
            spawn(async move {
                match api::get::<Vec<Client>>(&url).await {
                    Ok(list) => found.set(list),
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    let onsubmit = {
        let (service, centre, channel, client, new_name, new_code, error, busy, go) = (
            service.clone(),
            centre.clone(),
            channel.clone(),
            client.clone(),
            new_name.clone(),
            new_code.clone(),
            error.clone(),
            busy.clone(),
            ctx.go.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *busy {
                return;
            }
            busy.set(true);
            let (service, centre, channel) =
                ((*service).clone(), (*centre).clone(), (*channel).clone());
            let (chosen, name, code) = (*client, (*new_name).clone(), (*new_code).clone());
            let (error, busy, go) = (error.clone(), busy.clone(), go.clone());
            spawn(async move {
                // The client: one chosen from the search, a new one, or (when the code is
                // already registered) the registered one, by the code the client shows.
                let client = if chosen.is_some() || name.trim().is_empty() {
                    Ok(json!({ "client": chosen }))
                } else {
                    let body =
                        json!({"kind": "natural", "name": name, "code": code, "centre": centre});
                    match api::post_status::<_, Client>("/api/portal/clients", &body).await {
                        Ok(c) => Ok(json!({ "client": c.id })),
                        Err((409, _)) => Ok(json!({ "client_code": code })),
                        Err((_, e)) => Err(e),
                    }
                };
                let result = match client {
                    Ok(mut body) => {
                        body["service"] = json!(service);
                        body["centre"] = json!(centre);
                        body["channel"] = json!(channel);
                        api::post::<_, Case>("/api/portal/cases", Some(&body)).await
                    }
                    Err(e) => Err(e),
                };
                busy.set(false);
                match result {
                    Ok(case) => go.emit(Route::Case(case.id)),
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    let on_service = {
        let (service, channel, services) = (service.clone(), channel.clone(), services.clone());
        Callback::from(move |e: Event| {
            let code = select_value(&e);
            if let Some(s) = services.iter().find(|s| s.code == code)
                && !s.channels.contains(&*channel)
                && let Some(first) = s.channels.first()
            {
                channel.set(first.clone());
            }
            service.set(code);
        })
    };
    let on_centre = {
        let centre = centre.clone();
        Callback::from(move |e: Event| centre.set(select_value(&e)))
    };
    let on_channel = {
        let channel = channel.clone();
        Callback::from(move |e: Event| channel.set(select_value(&e)))
    };
    let on_q = {
        let q = client_q.clone();
        Callback::from(move |e: InputEvent| q.set(input_value(&e)))
    };
    let on_name = {
        let v = new_name.clone();
        Callback::from(move |e: InputEvent| v.set(input_value(&e)))
    };
    let on_code = {
        let v = new_code.clone();
        Callback::from(move |e: InputEvent| v.set(input_value(&e)))
    };
    let channels = chosen
        .as_ref()
        .map(|s| s.channels.clone())
        .unwrap_or_default();
    html! {
        <>
        <h1>{ tr(l, "Jauna lieta", "New case") }</h1>
        <form class="stack" {onsubmit}>
            <label for="service">{ tr(l, "Pakalpojums", "Service") }</label>
            <select id="service" onchange={on_service} required=true>
                { for services.iter().map(|s| html! {
                    <option value={ s.code.clone() } selected={ s.code == *service }>{ format!("{} — {}", s.code, s.name.get(l)) }</option>
                }) }
            </select>
            if let Some(s) = &chosen {
                <div class="hint">
                    <p>{ tr(l, "Termiņš: ", "Deadline: ") }{ s.deadline_days.map_or_else(|| tr(l, "nav noteikts", "none").to_owned(), |d| format!("{d} {}", tr(l, "dienas", "days"))) }</p>
                    if let Some(i) = &s.instructions { <p>{ i.get(l) }</p> }
                </div>
            }
            <label for="centre">{ tr(l, "Centrs", "Centre") }</label>
            <select id="centre" onchange={on_centre}>
                { for ctx.me.centres.iter().map(|c| html! { <option value={ c.clone() } selected={ *c == *centre }>{ c.clone() }</option> }) }
            </select>
            <label for="channel">{ tr(l, "Kanāls", "Channel") }</label>
            <select id="channel" onchange={on_channel}>
                { for channels.iter().map(|c| html! { <option value={ c.clone() } selected={ *c == *channel }>{ i18n::channel(l, c) }</option> }) }
            </select>
            <fieldset>
                <legend>{ tr(l, "Klients", "Client") }</legend>
                <label for="client-q">{ tr(l, "Meklēt klientu (vārds vai personas kods)", "Find a client (name or personal code)") }</label>
                <div class="inline">
                    <input id="client-q" type="search" oninput={on_q} />
                    <button type="button" onclick={search}>{ tr(l, "Meklēt", "Search") }</button>
                </div>
                <ul class="choices">
                    { for found.iter().map(|c| {
                        let (chosen, id) = (client.clone(), c.id);
                        let onchange = Callback::from(move |_| chosen.set(Some(id)));
                        let input_id = format!("client-{id}");
                        html! { <li>
                            <input type="radio" name="client" id={ input_id.clone() } checked={ *client == Some(id) } {onchange} />
                            <label for={ input_id }>{ format!("{} ({})", c.name, c.code) }</label>
                        </li> }
                    }) }
                </ul>
                <p>{ tr(l, "vai jauns klients:", "or a new client:") }</p>
                <label for="client-name">{ tr(l, "Vārds, uzvārds", "Full name") }</label>
                <input id="client-name" type="text" oninput={on_name} autocomplete="off" />
                <label for="client-code">{ tr(l, "Personas kods", "Personal code") }</label>
                <input id="client-code" type="text" inputmode="numeric" oninput={on_code} autocomplete="off" />
            </fieldset>
            { notice(&error) }
            <button type="submit" id="register" disabled={ *busy }>{ tr(l, "Reģistrēt lietu", "Register the case") }</button>
        </form>
        </>
    }
}

// ---- one case --------------------------------------------------------------------------

#[derive(Properties, PartialEq)]
pub struct CaseProps {
    pub ctx: Ctx,
    pub id: u64,
}

fn history_line(l: Lang, h: &api::HistoryEntry) -> Html {
    let what = match h.kind.as_str() {
        "registered" => tr(l, "Reģistrēta", "Registered").to_owned(),
        "moved" => format!(
            "{} → {}",
            i18n::state(l, h.from.as_deref().unwrap_or("")),
            i18n::state(l, h.to.as_ref().and_then(|v| v.as_str()).unwrap_or(""))
        ),
        "note" => tr(l, "Piezīme", "Note").to_owned(),
        "attached" => format!(
            "{} {}",
            tr(l, "Pielikums:", "Attachment:"),
            h.name.as_deref().unwrap_or("")
        ),
        "assigned" => format!(
            "{} {}",
            tr(l, "Nodota:", "Assigned to:"),
            h.to.as_ref().and_then(|v| v.as_str()).unwrap_or("—")
        ),
        other => other.to_owned(),
    };
    let text = h.note.clone().or_else(|| h.text.clone());
    html! {
        <li>
            <time>{ i18n::datetime(h.at) }</time>{ " · " }<strong>{ what }</strong>{ " · " }{ h.by.clone() }
            if let Some(t) = text { <blockquote>{ t }</blockquote> }
        </li>
    }
}

#[function_component(CasePage)]
pub fn case_page(p: &CaseProps) -> Html {
    let l = p.ctx.lang;
    let id = p.id;
    let detail = use_state(|| None::<CaseDetail>);
    let error = use_state(|| None::<String>);
    let note = use_state(String::new);
    let reload = use_state(|| 0_u32);
    {
        let (detail, error) = (detail.clone(), error.clone());
        use_effect_with((id, *reload), move |(id, _)| {
            let url = format!("/api/portal/cases/{id}");
            spawn(async move {
                match api::get::<CaseDetail>(&url).await {
                    Ok(d) => detail.set(Some(d)),
                    Err(e) => error.set(Some(e)),
                }
            });
            || ()
        });
    }
    let act = {
        let (error, reload) = (error.clone(), reload.clone());
        move |path: &'static str, body: serde_json::Value| {
            let (error, reload) = (error.clone(), reload.clone());
            let url = format!("/api/portal/cases/{id}/{path}");
            spawn(async move {
                match api::post::<_, Case>(&url, Some(&body)).await {
                    Ok(_) => {
                        error.set(None);
                        reload.set(*reload + 1);
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        }
    };
    let Some(d) = (*detail).clone() else {
        return html! { <>{ notice(&error) }<p role="status">{ tr(l, "Ielādē…", "Loading…") }</p></> };
    };
    let c = &d.case;
    let moves = d.next_states.iter().map(|s| {
        let (act, to) = (act.clone(), s.clone());
        let note = note.clone();
        let onclick = Callback::from(move |_| {
            let text = (*note).trim().to_owned();
            let body = if text.is_empty() { json!({"to": to}) } else { json!({"to": to, "note": text}) };
            note.set(String::new());
            act("moves", body);
        });
        html! { <button type="button" class="move" data-to={ s.clone() } {onclick}>{ i18n::state(l, s) }</button> }
    });
    let add_note = {
        let (act, note) = (act.clone(), note.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let text = (*note).clone();
            if !text.trim().is_empty() {
                note.set(String::new());
                act("notes", json!({"text": text}));
            }
        })
    };
    let on_note = {
        let note = note.clone();
        Callback::from(move |e: InputEvent| {
            note.set(e.target_unchecked_into::<HtmlTextAreaElement>().value())
        })
    };
    let upload = {
        let (error, reload) = (error.clone(), reload.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let input = web_sys::window()
                .and_then(|w| w.document())
                .and_then(|d| d.get_element_by_id("attachment"))
                .and_then(|el| wasm_bindgen::JsCast::dyn_into::<HtmlInputElement>(el).ok());
            let Some(file) = input
                .as_ref()
                .and_then(|i| i.files())
                .and_then(|f| f.get(0))
            else {
                return;
            };
            let url = format!(
                "/api/portal/cases/{id}/attachments?{}",
                api::query(&[("name", file.name())])
            );
            let (error, reload, input) = (error.clone(), reload.clone(), input.clone());
            spawn(async move {
                match api::upload(&url, &file).await {
                    Ok(_) => {
                        if let Some(i) = input {
                            i.set_value("");
                        }
                        error.set(None);
                        reload.set(*reload + 1);
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    let i = &c.indicators;
    html! {
        <>
        <h1>{ format!("{} #{}", tr(l, "Lieta", "Case"), c.id) }</h1>
        <p class="lead">{ c.service_name.get(l) }{ " · " }<span class="state" id="case-state" data-state={ c.state.clone() }>{ i18n::state(l, &c.state) }</span></p>
        { notice(&error) }
        <dl class="facts">
            <dt>{ tr(l, "Pakalpojums", "Service") }</dt><dd>{ format!("{} ({})", c.service, c.owner) }</dd>
            <dt>{ tr(l, "Klients", "Client") }</dt><dd>{ c.client.as_ref().map(|k| format!("{} ({})", k.name, k.code)).unwrap_or_else(|| "—".into()) }</dd>
            <dt>{ tr(l, "Kanāls", "Channel") }</dt><dd>{ i18n::channel(l, &c.channel) }</dd>
            <dt>{ tr(l, "Centrs", "Centre") }</dt><dd>{ c.centre.clone() }</dd>
            <dt>{ tr(l, "Atbildīgais", "Assignee") }</dt><dd>{ c.assignee.clone().unwrap_or_else(|| "—".into()) }</dd>
            <dt>{ tr(l, "Reģistrēta", "Registered") }</dt><dd>{ i18n::datetime(c.stages.registered) }</dd>
            <dt>{ tr(l, "Termiņš", "Due") }</dt><dd>{ c.due.map(i18n::datetime).unwrap_or_else(|| "—".into()) }</dd>
        </dl>
        <h2>{ tr(l, "Rādītāji", "Indicators") }</h2>
        <dl class="facts">
            <dt>{ tr(l, "Pieteikšanās laiks", "Time to apply") }</dt><dd>{ i18n::duration(l, i.time_to_apply) }</dd>
            <dt>{ tr(l, "Izpildes laiks", "Execution time") }</dt><dd>{ i18n::duration(l, i.execution_time) }</dd>
            <dt>{ tr(l, "Izsniegšanas laiks", "Time to deliver") }</dt><dd>{ i18n::duration(l, i.time_to_deliver) }</dd>
            <dt>{ tr(l, "Termiņš nokavēts", "Deadline breached") }</dt><dd>{ if i.deadline_breached { tr(l, "jā", "yes") } else { tr(l, "nē", "no") } }</dd>
        </dl>
        <h2>{ tr(l, "Darbības", "Actions") }</h2>
        <form class="stack" onsubmit={add_note}>
            <label for="note">{ tr(l, "Piezīme (pievienojas arī stāvokļa maiņai)", "Note (also goes with a change of state)") }</label>
            <textarea id="note" rows="3" value={ (*note).clone() } oninput={on_note} />
            <div class="inline">
                <button type="submit">{ tr(l, "Pievienot piezīmi", "Add note") }</button>
            </div>
        </form>
        if d.next_states.is_empty() {
            <p>{ tr(l, "Lieta ir pabeigta.", "The case is closed.") }</p>
        } else {
            <div class="moves" role="group" aria-label={ tr(l, "Mainīt stāvokli", "Change state") }>
                <span>{ tr(l, "Mainīt stāvokli:", "Change state:") }</span>{ for moves }
            </div>
        }
        <h2>{ tr(l, "Pielikumi", "Attachments") }</h2>
        if d.attachments.is_empty() {
            <p>{ tr(l, "Pielikumu nav.", "No attachments.") }</p>
        } else {
            <ul class="attachments">
                { for d.attachments.iter().map(|a| html! {
                    <li>
                        <a href={ format!("/api/portal/cases/{id}/attachments/{}", a.n) } download={ a.name.clone() }>{ a.name.clone() }</a>
                        { format!(" · {} KiB · SHA-256 {}…", a.size.div_ceil(1024), &a.sha256[..12.min(a.sha256.len())]) }
                    </li>
                }) }
            </ul>
        }
        <form class="inline" onsubmit={upload}>
            <label for="attachment">{ tr(l, "Pievienot failu (PDF, PNG, JPEG, TXT, ODT, DOCX)", "Attach a file (PDF, PNG, JPEG, TXT, ODT, DOCX)") }</label>
            <input id="attachment" type="file" accept=".pdf,.png,.jpg,.jpeg,.txt,.odt,.docx" />
            <button type="submit">{ tr(l, "Augšupielādēt", "Upload") }</button>
        </form>
        <h2>{ tr(l, "Vēsture", "History") }</h2>
        <ol class="history">{ for d.history.iter().map(|h| history_line(l, h)) }</ol>
        </>
    }
}

// ---- clients ---------------------------------------------------------------------------

#[function_component(Clients)]
pub fn clients(p: &Props) -> Html {
    let ctx = &p.ctx;
    let l = ctx.lang;
    let q = use_state(String::new);
    let found = use_state(|| None::<Vec<Client>>);
    let shown = use_state(Vec::<Unmasked>::new);
    let error = use_state(|| None::<String>);
    let onsubmit = {
        let (q, found, error) = (q.clone(), found.clone(), error.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let url = format!("/api/portal/clients?{}", api::query(&[("q", (*q).clone())]));
            let (found, error) = (found.clone(), error.clone());
            spawn(async move {
                match api::get::<Vec<Client>>(&url).await {
                    Ok(list) => {
                        found.set(Some(list));
                        error.set(None);
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    let on_q = {
        let q = q.clone();
        Callback::from(move |e: InputEvent| q.set(input_value(&e)))
    };
    let rows = found.as_ref().map(|list| list.iter().map(|c| {
        let code = shown.iter().find(|u| u.id == c.id).map_or_else(|| c.code.clone(), |u| u.code.clone());
        let unmask = (ctx.me.may_unmask && c.kind == "natural" && !shown.iter().any(|u| u.id == c.id)).then(|| {
            let (shown, error, id) = (shown.clone(), error.clone(), c.id);
            let onclick = Callback::from(move |_| {
                let (shown, error) = (shown.clone(), error.clone());
                spawn(async move {
                    match api::post::<(), Unmasked>(&format!("/api/portal/clients/{id}/unmask"), None).await {
                        Ok(u) => { let mut all = (*shown).clone(); all.push(u); shown.set(all); }
                        Err(e) => error.set(Some(e)),
                    }
                });
            });
            html! { <button type="button" {onclick}>{ tr(l, "Rādīt kodu", "Show code") }</button> }
        });
        html! { <tr><th scope="row">{ c.name.clone() }</th><td><code>{ code }</code></td><td>{ unmask.unwrap_or_default() }</td></tr> }
    }).collect::<Html>());
    html! {
        <>
        <h1>{ tr(l, "Klienti", "Clients") }</h1>
        <form class="filters" role="search" {onsubmit}>
            <label for="client-search">{ tr(l, "Vārds vai personas kods", "Name or personal code") }</label>
            <input id="client-search" type="search" oninput={on_q} />
            <button type="submit">{ tr(l, "Meklēt", "Search") }</button>
        </form>
        <p class="hint">{ tr(l, "Personas koda atklāšana tiek ierakstīta audita žurnālā.", "Showing a personal code is recorded in the audit log.") }</p>
        { notice(&error) }
        if let Some(r) = rows {
            <table>
                <caption class="sr-only">{ tr(l, "Atrastie klienti", "Clients found") }</caption>
                <thead><tr><th scope="col">{ tr(l, "Vārds", "Name") }</th><th scope="col">{ tr(l, "Kods", "Code") }</th><th scope="col"><span class="sr-only">{ tr(l, "Darbība", "Action") }</span></th></tr></thead>
                <tbody>{ r }</tbody>
            </table>
        }
        </>
    }
}

// ---- reports ---------------------------------------------------------------------------

fn this_year() -> (String, String) {
    let y = js_sys::Date::new_0().get_full_year();
    (format!("{y:04}-01-01"), format!("{:04}-01-01", y + 1))
}

fn hours(ms: Option<u64>) -> String {
    ms.map_or_else(|| "—".into(), |v| format!("{:.1}", v as f64 / 3_600_000.0))
}

/// A horizontal bar chart of case counts.
fn chart(l: Lang, rows: &[ReportRow]) -> Html {
    let max = rows.iter().map(|r| r.cases).max().unwrap_or(1).max(1);
    let bar_h = 22;
    let height = (rows.len() * (bar_h + 6) + 10).to_string();
    let label = tr(l, "Lietu skaits pa grupām", "Cases per group");
    html! {
        <svg class="chart" role="img" aria-label={ label } width="100%" {height} viewBox={ format!("0 0 600 {}", rows.len() * (bar_h + 6) + 10) }>
            <title>{ label }</title>
            { for rows.iter().enumerate().map(|(i, r)| {
                let y = (i * (bar_h + 6) + 5).to_string();
                let w = (r.cases as f64 / max as f64 * 380.0).max(1.0);
                let ty = (i * (bar_h + 6) + 5 + 16).to_string();
                html! { <g>
                    <text x="0" y={ ty.clone() } class="label">{ r.key.clone() }</text>
                    <rect x="200" y={ y } width={ format!("{w:.0}") } height={ bar_h.to_string() } class="bar" />
                    <text x={ format!("{:.0}", 205.0 + w) } y={ ty } class="value">{ r.cases.to_string() }</text>
                </g> }
            }) }
        </svg>
    }
}

#[function_component(Reports)]
pub fn reports(p: &Props) -> Html {
    let l = p.ctx.lang;
    let by = use_state(|| "service".to_owned());
    let period = use_state(this_year);
    let rows = use_state(|| None::<Vec<ReportRow>>);
    let error = use_state(|| None::<String>);
    let params = |by: &str, (from, to): &(String, String)| {
        api::query(&[
            ("by", by.to_owned()),
            ("from", from.clone()),
            ("to", to.clone()),
        ])
    };
    {
        let (rows, error) = (rows.clone(), error.clone());
        let q = params(&by, &period);
        use_effect_with(q, move |q| {
            let url = format!("/api/portal/reports?{q}");
            spawn(async move {
                match api::get::<Vec<ReportRow>>(&url).await {
                    Ok(r) => {
                        rows.set(Some(r));
                        error.set(None);
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
            || ()
        });
    }
    let on_by = {
        let by = by.clone();
        Callback::from(move |e: Event| by.set(select_value(&e)))
    };
    let on_from = {
        let p = period.clone();
        Callback::from(move |e: InputEvent| p.set((input_value(&e), p.1.clone())))
    };
    let on_to = {
        let p = period.clone();
        Callback::from(move |e: InputEvent| p.set((p.0.clone(), input_value(&e))))
    };
    let csv = format!("/api/portal/reports?{}&format=csv", params(&by, &period));
    let dims = [
        ("institution", "Iestāde", "Institution"),
        ("service", "Pakalpojums", "Service"),
        ("channel", "Kanāls", "Channel"),
        ("centre", "Centrs", "Centre"),
        ("specialist", "Darbinieks (noslodze)", "Staff (workload)"),
        ("month", "Mēnesis", "Month"),
    ];
    html! {
        <>
        <h1>{ tr(l, "Pārskati", "Reports") }</h1>
        <form class="filters" onsubmit={ Callback::from(|e: SubmitEvent| e.prevent_default()) }>
            <label for="report-by">{ tr(l, "Grupēt pēc", "Group by") }</label>
            <select id="report-by" onchange={on_by}>
                { for dims.iter().map(|(k, lv, en)| html! { <option value={ *k } selected={ *by == *k }>{ tr(l, lv, en) }</option> }) }
            </select>
            <label for="report-from">{ tr(l, "No", "From") }</label>
            <input id="report-from" type="date" value={ period.0.clone() } oninput={on_from} />
            <label for="report-to">{ tr(l, "Līdz (neieskaitot)", "To (exclusive)") }</label>
            <input id="report-to" type="date" value={ period.1.clone() } oninput={on_to} />
            <a class="button" href={ csv } download="report.csv">{ tr(l, "Lejupielādēt CSV", "Download CSV") }</a>
        </form>
        { notice(&error) }
        if let Some(rows) = rows.as_ref() {
            { chart(l, rows) }
            <table class="report">
                <caption class="sr-only">{ tr(l, "Pārskats", "Report") }</caption>
                <thead><tr>
                    <th scope="col">{ tr(l, "Grupa", "Group") }</th>
                    <th scope="col">{ tr(l, "Lietas", "Cases") }</th>
                    <th scope="col">{ tr(l, "Pieteikšanās, mediāna (h)", "Apply, median (h)") }</th>
                    <th scope="col">{ tr(l, "Izpilde, mediāna (h)", "Execution, median (h)") }</th>
                    <th scope="col">{ tr(l, "Izpilde, 90. procentile (h)", "Execution, 90th percentile (h)") }</th>
                    <th scope="col">{ tr(l, "Izsniegšana, mediāna (h)", "Delivery, median (h)") }</th>
                    <th scope="col">{ tr(l, "Termiņā", "Within deadline") }</th>
                </tr></thead>
                <tbody>{ for rows.iter().map(|r| html! { <tr data-key={ r.key.clone() }>
                    <th scope="row">{ r.key.clone() }</th>
                    <td class="cases">{ r.cases }</td>
                    <td>{ hours(r.time_to_apply.median) }</td>
                    <td>{ hours(r.execution_time.median) }</td>
                    <td>{ hours(r.execution_time.p90) }</td>
                    <td>{ hours(r.time_to_deliver.median) }</td>
                    <td>{ format!("{:.0} %", r.deadline_compliance * 100.0) }</td>
                </tr> }) }</tbody>
            </table>
        }
        </>
    }
}

// ---- administration --------------------------------------------------------------------

#[derive(Properties, PartialEq)]
struct StaffProps {
    ctx: Ctx,
    centres: Vec<Centre>,
}

/// Who works at which centre: a tenant administrator for their institution's centres, a
/// platform administrator for all (the server decides).
#[function_component(StaffForm)]
fn staff_form(p: &StaffProps) -> Html {
    let l = p.ctx.lang;
    let list = use_state(|| None::<Vec<api::Assignment>>);
    let subject = use_state(String::new);
    let chosen = use_state(Vec::<String>::new);
    let message = use_state(|| None::<String>);
    let error = use_state(|| None::<String>);
    let reload = use_state(|| 0_u32);
    {
        let (list, error) = (list.clone(), error.clone());
        use_effect_with(*reload, move |_| {
            spawn(async move {
                match api::get::<Vec<api::Assignment>>("/api/portal/staff").await {
                    Ok(l) => list.set(Some(l)),
                    Err(e) => error.set(Some(e)),
                }
            });
            || ()
        });
    }
    let on_subject = {
        let subject = subject.clone();
        Callback::from(move |e: InputEvent| subject.set(input_value(&e)))
    };
    let onsubmit = {
        let (subject, chosen, message, error, reload) = (
            subject.clone(),
            chosen.clone(),
            message.clone(),
            error.clone(),
            reload.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let body = json!({"subject": (*subject).trim(), "centres": *chosen});
            let (message, error, reload) = (message.clone(), error.clone(), reload.clone());
            spawn(async move {
                match api::put("/api/portal/staff", &body).await {
                    Ok(()) => {
                        error.set(None);
                        message.set(Some(tr(l, "Saglabāts.", "Saved.").to_owned()));
                        reload.set(*reload + 1);
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    html! {
        <section aria-labelledby="staff-h">
            <h2 id="staff-h">{ tr(l, "Darbinieki un centri", "Staff and centres") }</h2>
            if let Some(rows) = list.as_ref() {
                <table><thead><tr><th scope="col">{ tr(l, "Identifikators", "Subject") }</th><th scope="col">{ tr(l, "Centri", "Centres") }</th><th scope="col"><span class="sr-only">{ tr(l, "Darbība", "Action") }</span></th></tr></thead>
                <tbody>{ for rows.iter().map(|a| {
                    let (subject, chosen, who, centres) = (subject.clone(), chosen.clone(), a.subject.clone(), a.centres.clone());
                    let onclick = Callback::from(move |_| {
                        subject.set(who.clone());
                        chosen.set(centres.clone());
                    });
                    html! { <tr><th scope="row">{ a.subject.clone() }</th><td>{ a.centres.join(", ") }</td>
                        <td><button type="button" {onclick} aria-label={ format!("{} {}", tr(l, "Labot", "Edit"), a.subject) }>{ tr(l, "Labot", "Edit") }</button></td></tr> }
                }) }</tbody></table>
            }
            <form class="stack" {onsubmit}>
                <label for="staff-subject">{ tr(l, "Darbinieka identifikators (no IdP, direktorijs:lietotājs)", "Staff subject (from the IdP, directory:user)") }</label>
                <input id="staff-subject" type="text" value={ (*subject).clone() } oninput={on_subject} required=true />
                <fieldset>
                    <legend>{ tr(l, "Strādā centros", "Works at") }</legend>
                    { for p.centres.iter().map(|c| {
                        let (chosen, id) = (chosen.clone(), c.id.clone());
                        let checked = chosen.contains(&id);
                        let onchange = Callback::from(move |_| {
                            let mut next = (*chosen).clone();
                            if let Some(i) = next.iter().position(|x| *x == id) { next.remove(i); } else { next.push(id.clone()); }
                            chosen.set(next);
                        });
                        let input_id = format!("staff-centre-{}", c.id);
                        html! { <div><input type="checkbox" id={ input_id.clone() } {checked} {onchange} /><label for={ input_id }>{ c.name.get(l) }</label></div> }
                    }) }
                </fieldset>
                if let Some(m) = message.as_ref() { <p role="status">{ m.clone() }</p> }
                { notice(&error) }
                <button type="submit">{ tr(l, "Saglabāt", "Save") }</button>
            </form>
        </section>
    }
}

#[function_component(Admin)]
pub fn admin(p: &Props) -> Html {
    let ctx = &p.ctx;
    let l = ctx.lang;
    let data = use_state(|| None::<(Vec<Institution>, Vec<Centre>, Vec<Service>)>);
    let error = use_state(|| None::<String>);
    {
        let (data, error) = (data.clone(), error.clone());
        use_effect_with((), move |_| {
            spawn(async move {
                let got = async {
                    Ok::<_, String>((
                        api::get::<Vec<Institution>>("/api/portal/institutions").await?,
                        api::get::<Vec<Centre>>("/api/portal/centres").await?,
                        api::get::<Vec<Service>>("/api/portal/services").await?,
                    ))
                }
                .await;
                match got {
                    Ok(d) => data.set(Some(d)),
                    Err(e) => error.set(Some(e)),
                }
            });
            || ()
        });
    }
    let me = &ctx.me;
    html! {
        <>
        <h1>{ tr(l, "Administrēšana", "Administration") }</h1>
        <h2>{ tr(l, "Mans konts", "My account") }</h2>
        <dl class="facts">
            <dt>{ tr(l, "Identifikators", "Subject") }</dt><dd>{ me.subject.clone() }</dd>
            <dt>{ tr(l, "Lomas (no IdP)", "Roles (from the IdP)") }</dt><dd id="roles">{ me.roles.join(", ") }</dd>
            <dt>{ tr(l, "Centri", "Centres") }</dt><dd>{ me.centres.join(", ") }</dd>
            <dt>{ tr(l, "Iestāde", "Institution") }</dt><dd>{ me.institutions.join(", ") }</dd>
        </dl>
        { notice(&error) }
        if let Some((institutions, centres, services)) = data.as_ref() {
            <h2>{ tr(l, "Iestādes", "Institutions") }</h2>
            <table><thead><tr><th scope="col">{ "ID" }</th><th scope="col">{ tr(l, "Nosaukums", "Name") }</th><th scope="col">{ tr(l, "Veids", "Kind") }</th></tr></thead>
            <tbody>{ for institutions.iter().map(|i| html! { <tr><th scope="row">{ i.id.clone() }</th><td>{ i.name.get(l) }</td><td>{ if i.kind == "state" { tr(l, "valsts", "state") } else { tr(l, "pašvaldība", "municipal") } }</td></tr> }) }</tbody></table>
            <h2>{ tr(l, "Klientu apkalpošanas centri", "Customer service centres") }</h2>
            <table><thead><tr><th scope="col">{ "ID" }</th><th scope="col">{ tr(l, "Nosaukums", "Name") }</th><th scope="col">{ tr(l, "Apkalpo iestādes", "Serves") }</th></tr></thead>
            <tbody>{ for centres.iter().map(|c| html! { <tr><th scope="row">{ c.id.clone() }</th><td>{ c.name.get(l) }</td><td>{ c.serves.join(", ") }</td></tr> }) }</tbody></table>
            if me.has("platform_admin") || me.has("tenant_admin") {
                <StaffForm ctx={ ctx.clone() } centres={ centres.clone() } />
            }
            <h2>{ tr(l, "Pakalpojumu katalogs", "Service catalogue") }</h2>
            <table><thead><tr><th scope="col">{ tr(l, "Kods", "Code") }</th><th scope="col">{ tr(l, "Nosaukums", "Name") }</th><th scope="col">{ tr(l, "Iestāde", "Owner") }</th><th scope="col">{ tr(l, "Termiņš (d.)", "Deadline (days)") }</th></tr></thead>
            <tbody>{ for services.iter().map(|s| html! { <tr><th scope="row">{ s.code.clone() }</th><td>{ s.name.get(l) }</td><td>{ s.owner.clone() }</td><td>{ s.deadline_days.map(|d| d.to_string()).unwrap_or_else(|| "—".into()) }</td></tr> }) }</tbody></table>
        }
        </>
    }
}
