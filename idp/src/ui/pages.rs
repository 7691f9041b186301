//! The pages. Every value that came from a user or a directory goes through [`escape`].

use super::{Lang, Text, escape};

/// An institution in the picker.
#[derive(Debug, Clone)]
pub struct Institution {
    /// Directory id (the form value).
    pub id: String,
    /// Name in the page's language.
    pub name: String,
}

fn layout(lang: Lang, title: Text, switch_path: &str, body: &str) -> String {
    let other = lang.other();
    format!(
        "<!DOCTYPE html>\n<html lang=\"{tag}\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"referrer\" content=\"same-origin\">\n<title>{title} · Kopa</title>\n\
<link rel=\"stylesheet\" href=\"/static/kopa.css\">\n</head>\n<body>\n\
<a class=\"skip\" href=\"#content\">{skip}</a>\n\
<header><a class=\"brand\" href=\"/login?lang={tag}\">Kopa</a>\
<span class=\"lang\"><a href=\"{switch}?lang={other_tag}\" hreflang=\"{other_tag}\" lang=\"{other_tag}\">{switch_text}</a></span></header>\n\
<main id=\"content\">\n<h1>{title}</h1>\n{body}</main>\n<footer>{footer}</footer>\n</body>\n</html>\n",
        tag = lang.tag(),
        title = title.get(lang),
        skip = Text::SkipToContent.get(lang),
        switch = escape(switch_path),
        other_tag = other.tag(),
        switch_text = Text::LanguageSwitch.get(lang),
        footer = Text::Footer.get(lang),
    )
}

/// The error box: `role="alert"` so screen readers announce it when the page loads.
fn error_box(lang: Lang, error: Option<Text>) -> String {
    error.map_or_else(String::new, |e| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>\n",
            e.get(lang)
        )
    })
}

fn described_by(error: Option<Text>) -> &'static str {
    if error.is_some() {
        " aria-describedby=\"form-error\" aria-invalid=\"true\""
    } else {
        ""
    }
}

/// What the login form shows.
#[derive(Debug)]
pub struct LoginForm<'a> {
    /// Page language.
    pub lang: Lang,
    /// The anti-forgery token (also in the cookie).
    pub csrf: &'a str,
    /// Institutions to choose from.
    pub institutions: &'a [Institution],
    /// The institution chosen before, if any.
    pub selected: Option<&'a str>,
    /// The username typed before (never the password).
    pub username: &'a str,
    /// What went wrong last time.
    pub error: Option<Text>,
    /// Where to go after sign-in (a local path).
    pub return_to: &'a str,
}

/// The sign-in page.
pub fn login(f: &LoginForm<'_>) -> String {
    let lang = f.lang;
    let mut options = format!(
        "<option value=\"\">{}</option>",
        Text::InstitutionAny.get(lang)
    );
    for inst in f.institutions {
        let selected = if f.selected == Some(inst.id.as_str()) {
            " selected"
        } else {
            ""
        };
        options.push_str(&format!(
            "<option value=\"{}\"{selected}>{}</option>",
            escape(&inst.id),
            escape(&inst.name)
        ));
    }
    let body = format!(
        "{error}<form method=\"post\" action=\"/login\" novalidate>\n\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
<input type=\"hidden\" name=\"return_to\" value=\"{return_to}\">\n\
<input type=\"hidden\" name=\"lang\" value=\"{tag}\">\n\
<label for=\"username\">{username_label}</label>\n\
<input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required value=\"{username}\" aria-describedby=\"username-hint\"{invalid}>\n\
<p class=\"hint\" id=\"username-hint\">{hint}</p>\n\
<label for=\"password\">{password_label}</label>\n\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required{invalid}>\n\
<label for=\"institution\">{institution_label}</label>\n\
<select id=\"institution\" name=\"institution\">{options}</select>\n\
<button type=\"submit\">{submit}</button>\n</form>\n",
        error = error_box(lang, f.error),
        csrf = escape(f.csrf),
        return_to = escape(f.return_to),
        tag = lang.tag(),
        username_label = Text::Username.get(lang),
        username = escape(f.username),
        hint = Text::UsernameHint.get(lang),
        password_label = Text::Password.get(lang),
        institution_label = Text::Institution.get(lang),
        submit = Text::SignIn.get(lang),
        invalid = described_by(f.error),
    );
    layout(lang, Text::SignInTitle, "/login", &body)
}

/// The second-factor page.
pub fn mfa(lang: Lang, csrf: &str, error: Option<Text>) -> String {
    let body = format!(
        "{error}<form method=\"post\" action=\"/login/mfa\">\n\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n<input type=\"hidden\" name=\"lang\" value=\"{tag}\">\n\
<label for=\"code\">{label}</label>\n\
<input id=\"code\" name=\"code\" type=\"text\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required aria-describedby=\"code-hint\"{invalid}>\n\
<p class=\"hint\" id=\"code-hint\">{hint}</p>\n<button type=\"submit\">{submit}</button>\n</form>\n",
        error = error_box(lang, error),
        csrf = escape(csrf),
        tag = lang.tag(),
        label = Text::MfaCode.get(lang),
        hint = Text::MfaHint.get(lang),
        submit = Text::Verify.get(lang),
        invalid = described_by(error),
    );
    layout(lang, Text::MfaTitle, "/login/mfa", &body)
}

/// The enrolment page: QR code, the key as text, and the confirmation form.
pub fn enrol(
    lang: Lang,
    csrf: &str,
    secret_base32: &str,
    qr_svg: &str,
    error: Option<Text>,
) -> String {
    // The SVG is generated by us from the otpauth URI, not user input.
    let body = format!(
        "{error}<p>{intro}</p>\n<div class=\"qr\" role=\"img\" aria-label=\"QR\">{qr_svg}</div>\n\
<p>{secret_label}: <code id=\"secret\">{secret}</code></p>\n\
<form method=\"post\" action=\"/login/mfa/enrol\">\n\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n<input type=\"hidden\" name=\"lang\" value=\"{tag}\">\n\
<label for=\"code\">{label}</label>\n\
<input id=\"code\" name=\"code\" type=\"text\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required{invalid}>\n\
<button type=\"submit\">{submit}</button>\n</form>\n",
        error = error_box(lang, error),
        intro = Text::EnrolIntro.get(lang),
        secret_label = Text::EnrolSecret.get(lang),
        secret = escape(secret_base32),
        csrf = escape(csrf),
        tag = lang.tag(),
        label = Text::MfaCode.get(lang),
        submit = Text::Verify.get(lang),
        invalid = described_by(error),
    );
    layout(lang, Text::EnrolTitle, "/login/mfa/enrol", &body)
}

/// The recovery codes, shown once.
pub fn recovery_codes(lang: Lang, codes: &[String], continue_to: &str) -> String {
    let items: String = codes
        .iter()
        .map(|c| format!("<li>{}</li>", escape(c)))
        .collect();
    let body = format!(
        "<p class=\"notice\" role=\"status\">{intro}</p>\n<ol class=\"codes\">{items}</ol>\n\
<p><a href=\"{continue_to}\">{cont}</a></p>\n",
        intro = Text::RecoveryIntro.get(lang),
        continue_to = escape(continue_to),
        cont = Text::Continue.get(lang),
    );
    layout(lang, Text::RecoveryTitle, "/account", &body)
}

/// What the signed-in user sees of their session.
#[derive(Debug)]
pub struct Account<'a> {
    /// Page language.
    pub lang: Lang,
    /// Anti-forgery token for the sign-out form.
    pub csrf: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Login name.
    pub login: &'a str,
    /// Role names.
    pub roles: &'a [String],
    /// Tenant id, if any.
    pub tenant: Option<&'a str>,
}

/// The signed-in page, with the sign-out button.
pub fn account(a: &Account<'_>) -> String {
    let lang = a.lang;
    let body = format!(
        "<dl>\n<dt>{name_label}</dt><dd>{name} ({login})</dd>\n<dt>{tenant_label}</dt><dd>{tenant}</dd>\n\
<dt>{roles_label}</dt><dd>{roles}</dd>\n</dl>\n{logout}",
        name_label = Text::Name.get(lang),
        name = escape(a.name),
        login = escape(a.login),
        tenant_label = Text::Tenant.get(lang),
        tenant = escape(a.tenant.unwrap_or("—")),
        roles_label = Text::Roles.get(lang),
        roles = escape(&a.roles.join(", ")),
        logout = logout_form(lang, a.csrf),
    );
    layout(lang, Text::SignedInTitle, "/account", &body)
}

fn logout_form(lang: Lang, csrf: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/logout\">\n<input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
<input type=\"hidden\" name=\"lang\" value=\"{}\">\n<button type=\"submit\">{}</button>\n</form>\n",
        escape(csrf),
        lang.tag(),
        Text::SignOut.get(lang)
    )
}

/// Asks before signing out (a GET never changes state).
pub fn logout_confirm(lang: Lang, csrf: &str) -> String {
    let body = format!(
        "<p>{}</p>\n{}",
        Text::SignOutConfirm.get(lang),
        logout_form(lang, csrf)
    );
    layout(lang, Text::SignOut, "/logout", &body)
}

/// After sign-out; `partial` when some application did not confirm it.
pub fn signed_out(lang: Lang, partial: bool) -> String {
    let warning = if partial {
        format!(
            "<p class=\"error\" role=\"alert\">{}</p>\n",
            Text::PartialLogout.get(lang)
        )
    } else {
        String::new()
    };
    let body = format!(
        "<p class=\"notice\" role=\"status\">{}</p>\n{warning}<p><a href=\"/login?lang={}\">{}</a></p>\n",
        Text::SignedOut.get(lang),
        lang.tag(),
        Text::SignInAgain.get(lang)
    );
    layout(lang, Text::SignOut, "/login", &body)
}

/// Single Logout: tells each service provider (`n`, entity ID) of run `run` in its own
/// frame, and goes on to `/saml/slo/next` once all answered (by `/saml/logout.js`) or
/// after `wait_secs` (also without JavaScript).
pub fn saml_logout(lang: Lang, run: &str, providers: &[(usize, String)], wait_secs: u64) -> String {
    let run = escape(run);
    let next = format!("/saml/slo/next?run={run}");
    let frames: String = providers
        .iter()
        .map(|(n, sp)| {
            let sp = escape(sp);
            format!(
                "<li><span class=\"sp\">{sp}</span>\
<iframe src=\"/saml/slo/frame?run={run}&amp;n={n}\" data-n=\"{n}\" title=\"{sp}\" \
sandbox=\"allow-forms allow-scripts allow-same-origin allow-top-navigation-by-user-activation\" width=\"100%\" height=\"80\"></iframe></li>\n"
            )
        })
        .collect();
    let body = format!(
        "<p id=\"slo-page\" role=\"status\" data-next=\"{next}\" data-wait=\"{wait_secs}\" \
data-run=\"{run}\">{explain}</p>\n<script src=\"/saml/logout.js\"></script>\n\
<ul class=\"slo\">\n{frames}</ul>\n\
<noscript><meta http-equiv=\"refresh\" content=\"{wait_secs};url={next}\"></noscript>\n\
<p><a id=\"slo-next\" href=\"{next}\">{cont}</a></p>\n",
        explain = Text::SloExplain.get(lang),
        cont = Text::Continue.get(lang),
    );
    layout(lang, Text::SloTitle, "/login", &body)
}

/// Single Logout: what one service provider's frame shows once it answered; reports to
/// the logout page (or, shown on its own, goes on to `/saml/slo/next`).
pub fn saml_logout_step(lang: Lang, run: &str, n: usize, sp: &str, ok: bool) -> String {
    let (mark, text, class) = if ok {
        ("✓", Text::SloStepDone, "notice")
    } else {
        ("✗", Text::SloStepFailed, "error")
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"{tag}\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>{title} · Kopa</title>\n<link rel=\"stylesheet\" href=\"/static/kopa.css\">\n</head>\n<body>\n\
<p id=\"slo-step\" class=\"{class}\" role=\"status\" data-n=\"{n}\" data-run=\"{run}\" \
data-next=\"/saml/slo/next?run={run}\">{mark} {text}: {sp}</p>\n\
<p><a href=\"/saml/slo/next?run={run}\" target=\"_top\">{cont}</a></p>\n\
<script src=\"/saml/logout.js\"></script>\n</body>\n</html>\n",
        tag = lang.tag(),
        title = Text::SloTitle.get(lang),
        text = text.get(lang),
        sp = escape(sp),
        run = escape(run),
        cont = Text::Continue.get(lang),
    )
}

/// Asks the user to let a third-party application have `scopes`.
pub fn consent(lang: Lang, csrf: &str, request: &str, client: &str, scopes: &[String]) -> String {
    let items: String = scopes
        .iter()
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    let body = format!(
        "<p><strong>{client}</strong></p>\n<p>{ask}</p>\n<ul>{items}</ul>\n\
<form method=\"post\" action=\"/oidc/authorize/consent\">\n\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
<input type=\"hidden\" name=\"request\" value=\"{request}\">\n\
<input type=\"hidden\" name=\"lang\" value=\"{tag}\">\n\
<button type=\"submit\" name=\"decision\" value=\"allow\">{allow}</button>\n\
<button type=\"submit\" name=\"decision\" value=\"deny\">{deny}</button>\n</form>\n",
        client = escape(client),
        ask = Text::ConsentAsk.get(lang),
        csrf = escape(csrf),
        request = escape(request),
        tag = lang.tag(),
        allow = Text::Allow.get(lang),
        deny = Text::Deny.get(lang),
    );
    layout(lang, Text::ConsentTitle, "/oidc/authorize/consent", &body)
}

/// A request that cannot be answered to its application (e.g. an unknown client).
pub fn request_error(lang: Lang, message: &str) -> String {
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}</p>\n",
        escape(message)
    );
    layout(lang, Text::RequestErrorTitle, "/login", &body)
}

/// The page that carries a SAML message to a service provider: a form that posts itself
/// (by `/saml/autopost.js`) and a button for browsers without JavaScript.
pub fn saml_post(lang: Lang, action: &str, fields: &[(&str, &str)]) -> String {
    let mut inputs = String::new();
    for (name, value) in fields {
        inputs.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            escape(name),
            escape(value)
        ));
    }
    let body = format!(
        "<form method=\"post\" action=\"{action}\" id=\"saml-post\">\n{inputs}\
<p>{explain}</p>\n<button type=\"submit\">{cont}</button>\n</form>\n\
<script src=\"/saml/autopost.js\"></script>\n",
        action = escape(action),
        explain = Text::SamlPostExplain.get(lang),
        cont = Text::Continue.get(lang),
    );
    layout(lang, Text::SamlPostTitle, "/login", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_page_escapes_and_labels_everything() {
        let inst = [Institution {
            id: "talsi".into(),
            name: "Talsu novads <&>".into(),
        }];
        let html = login(&LoginForm {
            lang: Lang::Lv,
            csrf: "tok\"en",
            institutions: &inst,
            selected: Some("talsi"),
            username: "\"><script>alert(1)</script>",
            error: Some(Text::BadCredentials),
            return_to: "/account",
        });
        assert!(html.contains("<html lang=\"lv\">"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&quot;&gt;&lt;script&gt;"));
        assert!(html.contains("Talsu novads &lt;&amp;&gt;"));
        assert!(html.contains("value=\"talsi\" selected"));
        assert!(html.contains("role=\"alert\""));
        for id in ["username", "password", "institution"] {
            assert!(html.contains(&format!("<label for=\"{id}\">")), "{id}");
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(html.contains("Nepareizs lietotājvārds vai parole."));
    }

    #[test]
    fn english_pages_switch_back_to_latvian() {
        let html = signed_out(Lang::En, false);
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("You are signed out."));
        assert!(html.contains("?lang=lv"));
    }
}
