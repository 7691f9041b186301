//! A minimal browser for the server-rendered pages: a cookie jar honouring `Set-Cookie`
//! (including deletion), form posts with an `Origin` header as browsers send them, and
//! helpers to read hidden fields out of the HTML.

use crate::client::{Client, Proto, Resp};
use bytes::Bytes;
use http_body_util::Full;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One browser profile talking to one appliance.
#[derive(Debug, Clone)]
pub struct Browser {
    client: Client,
    addr: SocketAddr,
    /// Cookies by name.
    pub cookies: BTreeMap<String, String>,
    /// Raw `Set-Cookie` values seen, newest last.
    pub set_cookies: Vec<String>,
}

/// `application/x-www-form-urlencoded` encoding of `pairs`.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `value` of the hidden input named `name` in `html`.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(
        html[start..start + end]
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

impl Browser {
    /// A fresh profile (no cookies) for the appliance at `addr`.
    pub fn new(client: Client, addr: SocketAddr) -> Self {
        Self {
            client,
            addr,
            cookies: BTreeMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn absorb(&mut self, resp: &Resp) {
        for v in resp.headers.get_all(http::header::SET_COOKIE) {
            let Ok(text) = v.to_str() else { continue };
            self.set_cookies.push(text.to_owned());
            let Some((pair, attrs)) = text.split_once(';').or(Some((text, ""))) else {
                continue;
            };
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if attrs.contains("Max-Age=0") || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Sends `req` with the jar's cookies and takes the response's cookies.
    pub async fn send(&mut self, mut req: http::Request<Full<Bytes>>) -> Resp {
        if let Some(c) = self.cookie_header() {
            req.headers_mut()
                .insert(http::header::COOKIE, c.parse().unwrap());
        }
        let resp = self.client.send(self.addr, Proto::H2, req).await;
        self.absorb(&resp);
        resp
    }

    /// GET `path`.
    pub async fn get(&mut self, path: &str) -> Resp {
        let req = http::Request::get(format!("https://127.0.0.1{path}"))
            .body(Full::default())
            .unwrap();
        self.send(req).await
    }

    /// POST a form to `path` with this appliance's own `Origin`.
    pub async fn post_form(&mut self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        self.post_form_from(path, pairs, Some(&format!("https://{}", self.addr)))
            .await
    }

    /// POST a form with a chosen `Origin` header (or none).
    pub async fn post_form_from(
        &mut self,
        path: &str,
        pairs: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Resp {
        let mut req = http::Request::post(format!("https://{}{path}", self.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("user-agent", "kopa-tests/1.0");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let req = req
            .body(Full::new(Bytes::from(form_encode(pairs))))
            .unwrap();
        self.send(req).await
    }

    /// Sends `body` as JSON by `method` to `path`, with `origin` (or none).
    pub async fn json(
        &mut self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
        origin: Option<&str>,
    ) -> Resp {
        let bytes = body.to_string().into_bytes();
        self.send_body(method, path, "application/json", bytes, origin)
            .await
    }

    /// Sends `body` of `content_type` by `method` to `path`, with `origin` (or none).
    pub async fn send_body(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        origin: Option<&str>,
    ) -> Resp {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.addr))
            .header("content-type", content_type)
            .header("user-agent", "kopa-tests/1.0");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        self.send(req).await
    }

    /// Loads the sign-in page and returns its anti-forgery token.
    pub async fn login_csrf(&mut self) -> String {
        let page = self.get("/login").await;
        if page.status == 303 {
            // Already signed in: the page redirects, the token is the one in the jar.
            return self.cookies["__Host-kopa-csrf"].clone();
        }
        assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
        hidden(&String::from_utf8_lossy(&page.body), "csrf").expect("csrf field")
    }

    /// Submits the sign-in form; returns the response.
    pub async fn login(&mut self, username: &str, password: &str, institution: &str) -> Resp {
        let csrf = self.login_csrf().await;
        self.post_form(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("password", password),
                ("institution", institution),
                ("return_to", "/account"),
            ],
        )
        .await
    }
}

/// The TOTP key the enrolment page shows as text.
pub fn shown_secret(page: &str) -> String {
    let start = page.find("id=\"secret\">").expect("secret on the page") + "id=\"secret\">".len();
    page[start..].split('<').next().unwrap().to_owned()
}

/// A TOTP code from the independent `oathtool`, `offset` seconds from now.
pub fn oathtool(secret: &str, offset: i64) -> String {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset;
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", secret, "-N", &format!("@{at}")])
        .output()
        .expect("oathtool is installed (make test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Signs in a user whose role requires MFA, enrolling with oathtool; returns the browser.
pub async fn sign_in_with_new_totp(kopa: &kopa::Handle, login: &str, password: &str) -> Browser {
    let mut b = Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    let resp = b.login(login, password, "").await;
    assert!(
        resp.header("location").starts_with("/login/mfa/enrol"),
        "{:?}",
        resp.headers
    );
    let page = String::from_utf8_lossy(&b.get("/login/mfa/enrol").await.body).into_owned();
    let secret = shown_secret(&page);
    let csrf = hidden(&page, "csrf").unwrap();
    let done = b
        .post_form(
            "/login/mfa/enrol",
            &[("csrf", &csrf), ("code", &oathtool(&secret, 0))],
        )
        .await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    b
}
