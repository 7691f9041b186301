//! The security officers' dashboards: alerts (acknowledge, silence), failed sign-ins and
//! lockouts with the top accounts and addresses, the compliance scorecard with its
//! evidence, certificate expiry, and the audit log search with its CSV export. The
//! server scopes everything to the officer's institution (or the whole platform).

use crate::api;
use crate::i18n::{Lang, datetime, tr};
use crate::pages::{Props, notice, spawn};
use serde_json::{Value, json};
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn ms(v: &Value) -> String {
    v.as_u64().map(datetime).unwrap_or_default()
}

fn labels(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", s(v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn severity(l: Lang, v: &Value) -> &'static str {
    match v.as_str().unwrap_or_default() {
        "critical" => tr(l, "kritisks", "critical"),
        "high" => tr(l, "augsts", "high"),
        "medium" => tr(l, "vidējs", "medium"),
        _ => tr(l, "zems", "low"),
    }
}

fn status(l: Lang, v: &Value) -> &'static str {
    match v.as_str().unwrap_or_default() {
        "pass" => tr(l, "atbilst", "pass"),
        "fail" => tr(l, "neatbilst", "fail"),
        "firing" => tr(l, "aktīvs", "firing"),
        "pending" => tr(l, "gaida", "pending"),
        "resolved" => tr(l, "atrisināts", "resolved"),
        _ => tr(l, "nav piemērojams", "not applicable"),
    }
}

/// Loads `url` into `state` now and whenever `tick` changes.
fn load(url: String, state: UseStateHandle<Option<Value>>, error: UseStateHandle<Option<String>>) {
    spawn(async move {
        match api::get::<Value>(&url).await {
            Ok(v) => state.set(Some(v)),
            Err(e) => error.set(Some(e)),
        }
    });
}

fn hourly_chart(l: Lang, hours: &[Value]) -> Html {
    let max = hours
        .iter()
        .map(|h| h["failed"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0)
        .max(1);
    let label = tr(
        l,
        "Neveiksmīgas pieteikšanās (zilas) un bloķēti konti (sarkani) pa stundām (24 h)",
        "Failed sign-ins (blue) and locked accounts (red) per hour (24 h)",
    );
    html! {
        <svg class="chart" id="failed-chart" role="img" aria-label={ label } width="100%" height="140" viewBox="0 0 600 140">
            <title>{ label }</title>
            { for hours.iter().enumerate().map(|(i, h)| {
                let n = h["failed"].as_u64().unwrap_or(0);
                let bar = (n as f64 / max as f64 * 110.0).max(if n > 0 { 2.0 } else { 0.0 });
                let x = i * 25;
                html! { <g>
                    <rect x={ x.to_string() } y={ format!("{:.0}", 115.0 - bar) } width="20" height={ format!("{bar:.0}") } class="bar" />
                    if h["lockouts"].as_u64().unwrap_or(0) > 0 {
                        <rect x={ (x + 14).to_string() } y={ format!("{:.0}", 115.0 - (h["lockouts"].as_u64().unwrap_or(0) as f64 / max as f64 * 110.0).max(4.0)) }
                            width="6" height={ format!("{:.0}", (h["lockouts"].as_u64().unwrap_or(0) as f64 / max as f64 * 110.0).max(4.0)) } class="lockout" />
                    }
                    if n > 0 {
                        <text x={ (x + 2).to_string() } y={ format!("{:.0}", 112.0 - bar) } class="value">{ n.to_string() }</text>
                    }
                    if i % 6 == 0 {
                        <text x={ x.to_string() } y="135" class="label">{ datetime(h["hour_ms"].as_u64().unwrap_or(0)).chars().skip(11).take(5).collect::<String>() }</text>
                    }
                </g> }
            }) }
        </svg>
    }
}

fn offenders(l: Lang, id: &str, caption: (&str, &str), rows: &Value) -> Html {
    let rows = rows.as_array().cloned().unwrap_or_default();
    html! {
        <table class="report" id={ id.to_owned() }>
            <caption>{ tr(l, caption.0, caption.1) }</caption>
            <thead><tr>
                <th scope="col">{ tr(l, "Konts vai adrese", "Account or address") }</th>
                <th scope="col">{ tr(l, "Iestāde", "Institution") }</th>
                <th scope="col">{ tr(l, "Neveiksmes", "Failures") }</th>
                <th scope="col">{ tr(l, "Pēdējā", "Last") }</th>
            </tr></thead>
            <tbody>{ for rows.iter().map(|o| html! { <tr>
                <td>{ s(&o["key"]) }</td><td>{ s(&o["tenant"]) }</td>
                <td>{ s(&o["failures"]) }</td><td>{ ms(&o["last_ms"]) }</td>
            </tr> }) }</tbody>
        </table>
    }
}

#[derive(Properties, PartialEq)]
struct AlertProps {
    lang: Lang,
    alert: Value,
    changed: Callback<()>,
}

#[function_component(AlertRow)]
fn alert_row(p: &AlertProps) -> Html {
    let l = p.lang;
    let a = &p.alert;
    let id = s(&a["id"]);
    let reason = use_node_ref();
    let minutes = use_node_ref();
    let error = use_state(|| None::<String>);
    let act = |verb: &'static str| {
        let (reason, minutes, error, changed, id) = (
            reason.clone(),
            minutes.clone(),
            error.clone(),
            p.changed.clone(),
            id.clone(),
        );
        Callback::from(move |_| {
            let text = reason
                .cast::<HtmlInputElement>()
                .map(|i| i.value())
                .unwrap_or_default();
            let mins: u64 = minutes
                .cast::<HtmlSelectElement>()
                .and_then(|s| s.value().parse().ok())
                .unwrap_or(60);
            let body = if verb == "silence" {
                json!({"reason": text, "minutes": mins})
            } else {
                json!({"reason": text})
            };
            let (error, changed, url) = (
                error.clone(),
                changed.clone(),
                format!("/api/monitor/alerts/{id}/{verb}"),
            );
            spawn(async move {
                match api::post::<Value, Value>(&url, Some(&body)).await {
                    Ok(_) => {
                        error.set(None);
                        changed.emit(());
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    let title = if l == Lang::Lv {
        s(&a["title_lv"])
    } else {
        s(&a["title_en"])
    };
    let acked = a["ack"].is_object();
    let reason_id = format!("reason-{id}");
    let minutes_id = format!("minutes-{id}");
    html! {
        <tr class={ format!("alert {}", s(&a["state"])) } data-rule={ s(&a["rule"]) }>
            <td>{ severity(l, &a["severity"]) }</td>
            <td>{ title }<br /><small>{ labels(&a["labels"]) }</small></td>
            <td>{ status(l, &a["state"]) }</td>
            <td>{ ms(&a["since_ms"]) }</td>
            <td>
                if acked {
                    <p class="ack">{ tr(l, "Apstiprināja ", "Acknowledged by ") }{ s(&a["ack"]["by"]) }{ ": " }{ s(&a["ack"]["reason"]) }</p>
                }
                if a["silenced_until_ms"].is_u64() {
                    <p>{ tr(l, "Apklusināts līdz ", "Silenced until ") }{ ms(&a["silenced_until_ms"]) }</p>
                }
                if s(&a["state"]) != "resolved" {
                    <div class="alert-actions">
                        <label for={ reason_id.clone() }>{ tr(l, "Iemesls", "Reason") }</label>
                        <input id={ reason_id } ref={ reason.clone() } type="text" maxlength="500" />
                        <button type="button" class="ack-button" onclick={ act("ack") }>{ tr(l, "Apstiprināt", "Acknowledge") }</button>
                        <label for={ minutes_id.clone() }>{ tr(l, "Uz", "For") }</label>
                        <select id={ minutes_id } ref={ minutes.clone() }>
                            <option value="60">{ tr(l, "1 stundu", "1 hour") }</option>
                            <option value="1440">{ tr(l, "1 dienu", "1 day") }</option>
                            <option value="10080">{ tr(l, "1 nedēļu", "1 week") }</option>
                        </select>
                        <button type="button" onclick={ act("silence") }>{ tr(l, "Apklusināt", "Silence") }</button>
                    </div>
                }
                { notice(&error) }
            </td>
        </tr>
    }
}

#[function_component(Security)]
pub fn security(p: &Props) -> Html {
    let l = p.ctx.lang;
    let tick = use_state(|| 0u32);
    let overview = use_state(|| None::<Value>);
    let alerts = use_state(|| None::<Value>);
    let auth = use_state(|| None::<Value>);
    let compliance = use_state(|| None::<Value>);
    let certs = use_state(|| None::<Value>);
    let error = use_state(|| None::<String>);
    {
        let (o, a, au, c, ce, e) = (
            overview.clone(),
            alerts.clone(),
            auth.clone(),
            compliance.clone(),
            certs.clone(),
            error.clone(),
        );
        use_effect_with(*tick, move |_| {
            load("/api/monitor/overview".into(), o, e.clone());
            load("/api/monitor/alerts".into(), a, e.clone());
            load("/api/monitor/auth".into(), au, e.clone());
            load("/api/monitor/compliance".into(), c, e.clone());
            load("/api/monitor/certificates".into(), ce, e);
            || ()
        });
    }
    let changed = {
        let tick = tick.clone();
        Callback::from(move |()| tick.set(*tick + 1))
    };
    let refresh = {
        let changed = changed.clone();
        Callback::from(move |_| changed.emit(()))
    };
    html! {
        <>
        <h1>{ tr(l, "Drošības uzraudzība", "Security monitoring") }</h1>
        { notice(&error) }
        <button type="button" onclick={ refresh }>{ tr(l, "Atjaunot", "Refresh") }</button>
        if let Some(o) = overview.as_ref() {
            <section aria-labelledby="h-overview" class="overview">
                <h2 id="h-overview">{ tr(l, "Kopsavilkums", "Overview") }</h2>
                <dl class="figures">
                    <dt>{ tr(l, "Atbilstība (kopā)", "Compliance (overall)") }</dt>
                    <dd id="score-overall">{ o["scores"]["overall"].as_f64().map(|v| format!("{v:.0} %")).unwrap_or_else(|| "—".into()) }</dd>
                    <dt>{ tr(l, "Aktīvās trauksmes", "Alerts firing") }</dt>
                    <dd id="alerts-firing">{ s(&o["alerts_firing"]) }</dd>
                    <dt>{ tr(l, "Neatbilstošas kontroles", "Failed controls") }</dt>
                    <dd>{ s(&o["failed_controls"]) }</dd>
                    <dt>{ tr(l, "Sertifikāti, kam < 30 dienas", "Certificates with < 30 days") }</dt>
                    <dd>{ s(&o["certificates_expiring_30d"]) }</dd>
                </dl>
            </section>
        }
        <section aria-labelledby="h-alerts">
            <h2 id="h-alerts">{ tr(l, "Trauksmes", "Alerts") }</h2>
            if let Some(a) = alerts.as_ref() {
                <table class="report" id="alerts">
                    <caption class="sr-only">{ tr(l, "Trauksmes", "Alerts") }</caption>
                    <thead><tr>
                        <th scope="col">{ tr(l, "Svarīgums", "Severity") }</th>
                        <th scope="col">{ tr(l, "Trauksme", "Alert") }</th>
                        <th scope="col">{ tr(l, "Stāvoklis", "State") }</th>
                        <th scope="col">{ tr(l, "Kopš", "Since") }</th>
                        <th scope="col">{ tr(l, "Darbības", "Actions") }</th>
                    </tr></thead>
                    <tbody>{ for a["alerts"].as_array().cloned().unwrap_or_default().into_iter().map(|alert| html! {
                        <AlertRow lang={l} key={ s(&alert["id"]) } alert={ alert.clone() } changed={ changed.clone() } />
                    }) }</tbody>
                </table>
            }
        </section>
        <section aria-labelledby="h-auth">
            <h2 id="h-auth">{ tr(l, "Neveiksmīgas pieteikšanās", "Failed sign-ins") }</h2>
            if let Some(au) = auth.as_ref() {
                { hourly_chart(l, &au["hourly"].as_array().cloned().unwrap_or_default()) }
                { offenders(l, "top-accounts", ("Konti ar visvairāk neveiksmēm (24 h)", "Accounts with most failures (24 h)"), &au["top_accounts"]) }
                { offenders(l, "top-ips", ("Adreses ar visvairāk neveiksmēm (24 h)", "Addresses with most failures (24 h)"), &au["top_ips"]) }
            }
        </section>
        <section aria-labelledby="h-compliance">
            <h2 id="h-compliance">{ tr(l, "Atbilstība drošības prasībām", "Compliance") }</h2>
            if let Some(c) = compliance.as_ref() {
                <ul class="scores">{ for c["profiles"].as_array().cloned().unwrap_or_default().iter().map(|pr| {
                    let id = s(&pr["id"]);
                    let score = c["scores"][&id].as_f64().map(|v| format!("{v:.0} %")).unwrap_or_else(|| "—".into());
                    html! { <li>{ if l == Lang::Lv { s(&pr["title_lv"]) } else { s(&pr["title_en"]) } }{ ": " }<strong>{ score }</strong></li> }
                }) }</ul>
                <div id="controls">{ for c["controls"].as_array().cloned().unwrap_or_default().iter().map(|ctl| {
                    let results = ctl["results"].as_array().cloned().unwrap_or_default();
                    let worst = if results.iter().any(|r| r["status"] == "fail") { "fail" }
                        else if results.iter().any(|r| r["status"] == "pass") { "pass" } else { "not_applicable" };
                    html! {
                        <details class={ format!("control {worst}") } data-control={ s(&ctl["id"]) }>
                            <summary>
                                <span class="status">{ status(l, &json!(worst)) }</span>{ " " }
                                <strong>{ s(&ctl["id"]) }</strong>{ " " }
                                { if l == Lang::Lv { s(&ctl["title_lv"]) } else { s(&ctl["title_en"]) } }
                                { " · " }{ severity(l, &ctl["severity"]) }
                            </summary>
                            <p><small>{ s(&ctl["source"]) }</small></p>
                            <table class="report">
                                <caption class="sr-only">{ tr(l, "Pierādījumi", "Evidence") }</caption>
                                <thead><tr>
                                    <th scope="col">{ tr(l, "Tvērums", "Scope") }</th>
                                    <th scope="col">{ tr(l, "Rezultāts", "Result") }</th>
                                    <th scope="col">{ tr(l, "Vērtības", "Values") }</th>
                                    <th scope="col">{ tr(l, "Novērtēts", "Evaluated") }</th>
                                </tr></thead>
                                <tbody>{ for results.iter().map(|r| html! { <tr>
                                    <td>{ s(&r["scope"]) }</td>
                                    <td>{ status(l, &r["status"]) }</td>
                                    <td>{ for r["evidence"].as_array().cloned().unwrap_or_default().iter().map(|e| html! {
                                        <div>{ labels(&e["labels"]) }{ " = " }{ e["value"].as_f64().map(|v| format!("{v:.2}")).unwrap_or_default() }</div>
                                    }) }</td>
                                    <td>{ ms(&r["evaluated_ms"]) }</td>
                                </tr> }) }</tbody>
                            </table>
                            <p>{ tr(l, "Novēršana: ", "Remediation: ") }{ if l == Lang::Lv { s(&ctl["remediation_lv"]) } else { s(&ctl["remediation_en"]) } }</p>
                        </details>
                    }
                }) }</div>
            }
        </section>
        <section aria-labelledby="h-certs">
            <h2 id="h-certs">{ tr(l, "Sertifikāti", "Certificates") }</h2>
            if let Some(ce) = certs.as_ref() {
                <table class="report" id="certificates">
                    <caption class="sr-only">{ tr(l, "Sertifikātu derīgums", "Certificate expiry") }</caption>
                    <thead><tr>
                        <th scope="col">{ tr(l, "Nosaukums", "Name") }</th>
                        <th scope="col">{ tr(l, "Subjekts", "Subject") }</th>
                        <th scope="col">{ tr(l, "Dienas līdz beigām", "Days left") }</th>
                        <th scope="col">{ tr(l, "Atslēga", "Key") }</th>
                        <th scope="col">{ tr(l, "Paraksts", "Signature") }</th>
                    </tr></thead>
                    <tbody>{ for ce["certificates"].as_array().cloned().unwrap_or_default().iter().map(|c| {
                        let days = c["days_left"].as_f64().unwrap_or(0.0);
                        html! { <tr class={ if days < 30.0 { "soon" } else { "" } } data-cert={ s(&c["name"]) }>
                            <td>{ s(&c["name"]) }</td><td>{ s(&c["subject"]) }</td>
                            <td>{ format!("{days:.0}") }</td>
                            <td>{ format!("{} {}", s(&c["key_type"]), s(&c["key_bits"])) }</td>
                            <td>{ s(&c["signature_algorithm"]) }</td>
                        </tr> }
                    }) }</tbody>
                </table>
            }
        </section>
        <AuditSearch lang={l} />
        </>
    }
}

#[derive(Properties, PartialEq)]
struct LangProps {
    lang: Lang,
}

#[function_component(AuditSearch)]
fn audit_search(p: &LangProps) -> Html {
    let l = p.lang;
    let user = use_node_ref();
    let outcome = use_node_ref();
    let from = use_node_ref();
    let ip = use_node_ref();
    let query = use_state(String::new);
    let page = use_state(|| None::<Value>);
    let error = use_state(|| None::<String>);
    {
        let (page, error) = (page.clone(), error.clone());
        use_effect_with((*query).clone(), move |q| {
            load(format!("/api/audit/events?limit=100&{q}"), page, error);
            || ()
        });
    }
    let onsubmit = {
        let (user, outcome, from, ip, query) = (
            user.clone(),
            outcome.clone(),
            from.clone(),
            ip.clone(),
            query.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let v = |r: &NodeRef| {
                r.cast::<HtmlInputElement>()
                    .map(|i| i.value())
                    .unwrap_or_default()
            };
            let o = outcome
                .cast::<HtmlSelectElement>()
                .map(|s| s.value())
                .unwrap_or_default();
            query.set(api::query(&[
                ("user", v(&user)),
                ("outcome", o),
                ("from", v(&from)),
                ("ip", v(&ip)),
            ]));
        })
    };
    let csv = format!("/api/audit/events?limit=1000&format=csv&{}", *query);
    html! {
        <section aria-labelledby="h-audit">
            <h2 id="h-audit">{ tr(l, "Audita žurnāls", "Audit log") }</h2>
            <form class="filters" id="audit-search" {onsubmit}>
                <label for="audit-user">{ tr(l, "Lietotājs", "User") }</label>
                <input id="audit-user" ref={ user } type="text" />
                <label for="audit-outcome">{ tr(l, "Iznākums", "Outcome") }</label>
                <select id="audit-outcome" ref={ outcome }>
                    <option value="">{ tr(l, "jebkurš", "any") }</option>
                    <option value="failure">{ tr(l, "neveiksme", "failure") }</option>
                    <option value="success">{ tr(l, "veiksme", "success") }</option>
                </select>
                <label for="audit-from">{ tr(l, "No datuma", "From date") }</label>
                <input id="audit-from" ref={ from } type="date" />
                <label for="audit-ip">{ tr(l, "IP adrese", "IP address") }</label>
                <input id="audit-ip" ref={ ip } type="text" />
                <button type="submit">{ tr(l, "Meklēt", "Search") }</button>
                <a class="button" href={ csv } download="kopa-audit.csv">{ tr(l, "Lejupielādēt CSV", "Download CSV") }</a>
            </form>
            { notice(&error) }
            if let Some(pg) = page.as_ref() {
                <table class="report" id="audit-records">
                    <caption class="sr-only">{ tr(l, "Audita ieraksti", "Audit records") }</caption>
                    <thead><tr>
                        <th scope="col">{ tr(l, "Laiks", "Time") }</th>
                        <th scope="col">{ tr(l, "Darbība", "Action") }</th>
                        <th scope="col">{ tr(l, "Iznākums", "Outcome") }</th>
                        <th scope="col">{ tr(l, "Iemesls", "Reason") }</th>
                        <th scope="col">{ tr(l, "Lietotājs", "User") }</th>
                        <th scope="col">{ tr(l, "IP adrese", "IP address") }</th>
                    </tr></thead>
                    <tbody>{ for pg["records"].as_array().cloned().unwrap_or_default().iter().map(|r| html! { <tr>
                        <td>{ s(&r["@timestamp"]) }</td><td>{ s(&r["event.action"]) }</td>
                        <td>{ s(&r["event.outcome"]) }</td><td>{ s(&r["event.reason"]) }</td>
                        <td>{ s(&r["user.name"]) }</td><td>{ s(&r["source.ip"]) }</td>
                    </tr> }) }</tbody>
                </table>
            }
        </section>
    }
}
