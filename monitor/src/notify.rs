//! Alert notifications: e-mail over SMTP (RFC 5321, STARTTLS per RFC 3207, AUTH PLAIN per
//! RFC 4954) and webhooks signed with HMAC-SHA256.
//!
//! A webhook request carries `Kopa-Signature: t=<unix seconds>,v1=<hex>` where the hex is
//! HMAC-SHA256 over `<t>.<body>` with the webhook's secret; receivers should recompute it
//! and refuse old timestamps.

use crate::alerts::{Alert, AlertState};
use base64::Engine as _;
use kopa_config::{EmailConfig, SmtpSecurity, WebhookConfig};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest reply line accepted (RFC 5321 allows 512 octets), and most lines per reply.
const MAX_REPLY_LINE: u64 = 2048;
const MAX_REPLY_LINES: usize = 100;

/// Where notifications go, with the secrets read at start.
#[derive(Clone)]
pub struct Notifier {
    pub email: Option<(EmailConfig, Option<kopa_config::Secret>)>,
    pub webhooks: Vec<(WebhookConfig, kopa_config::Secret)>,
    /// Host name used in EHLO and Message-ID.
    pub hostname: String,
    /// Where the dashboards are, for links in messages.
    pub base_url: String,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("email", &self.email.as_ref().map(|(e, _)| &e.smtp_host))
            .field("webhooks", &self.webhooks.len())
            .finish()
    }
}

/// The JSON a webhook receives.
pub fn webhook_body(a: &Alert, base_url: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": a.id,
        "rule": a.rule,
        "state": a.state,
        "severity": a.severity,
        "title": {"lv": a.title_lv, "en": a.title_en},
        "labels": a.labels,
        "value": a.value,
        "since": kopa_store::audit::format_rfc3339_ms(a.since_ms),
        "url": format!("{base_url}/security"),
    }))
    .unwrap_or_default()
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>." ‖ body)>`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(format!("{t}.").as_bytes());
    ctx.update(body);
    format!("t={t},v1={}", hex::encode(ctx.sign().as_ref()))
}

impl Notifier {
    /// Sends `alert` everywhere, three tries each (each try at most a minute); returns
    /// one line per destination.
    pub async fn send(&self, alert: &Alert, now_secs: u64) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        if let Some((cfg, password)) = &self.email {
            let r = retry(|| async {
                tokio::time::timeout(
                    ATTEMPT_TIMEOUT,
                    self.mail(cfg, password.as_ref(), alert, now_secs),
                )
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
            })
            .await;
            out.push((
                r.is_ok(),
                format!("e-mail: {}", r.err().unwrap_or_else(|| "sent".into())),
            ));
        }
        for (hook, secret) in &self.webhooks {
            let body = webhook_body(alert, &self.base_url);
            let r = retry(|| async {
                // Signed at each try, so a retry minutes later still has a fresh stamp.
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(now_secs, |d| d.as_secs());
                let sig = signature(secret.expose().as_bytes(), t, &body);
                let sent = kopa_web::outbound::send_to(
                    hyper::Method::POST,
                    &hook.url,
                    "*/*",
                    Some(kopa_web::outbound::Body {
                        content_type: "application/json",
                        bytes: body.clone(),
                        headers: vec![("kopa-signature", sig)],
                    }),
                    4096,
                );
                let answer = tokio::time::timeout(ATTEMPT_TIMEOUT, sent)
                    .await
                    .map_err(|_| "timed out".to_owned())??;
                if (200..300).contains(&answer.status) {
                    Ok(())
                } else {
                    Err(format!("http_{}", answer.status))
                }
            })
            .await;
            out.push((
                r.is_ok(),
                format!(
                    "webhook {}: {}",
                    hook.name,
                    r.err().unwrap_or_else(|| "sent".into())
                ),
            ));
        }
        out
    }

    async fn mail(
        &self,
        cfg: &EmailConfig,
        password: Option<&kopa_config::Secret>,
        alert: &Alert,
        now_secs: u64,
    ) -> Result<(), String> {
        let message = compose(cfg, alert, &self.hostname, &self.base_url, now_secs);
        let address = (cfg.smtp_host.as_str(), cfg.smtp_port);
        let tcp = tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect failed: {}", e.kind()))?;
        let _ = tcp.set_nodelay(true);
        let auth = cfg.username.as_deref().zip(password);
        match cfg.security {
            SmtpSecurity::Tls => {
                let tls = tls_connect(&cfg.smtp_host, tcp).await?;
                let mut s = Smtp::new(tls);
                s.expect(220).await?;
                s.ehlo(&self.hostname).await?;
                s.deliver(cfg, auth, &message).await
            }
            SmtpSecurity::Starttls => {
                let mut s = Smtp::new(tcp);
                s.expect(220).await?;
                let caps = s.ehlo(&self.hostname).await?;
                if !caps.iter().any(|c| c.eq_ignore_ascii_case("STARTTLS")) {
                    return Err("the server does not offer STARTTLS".into());
                }
                s.command("STARTTLS", 220).await?;
                let tcp = s.into_inner()?;
                let mut s = Smtp::new(tls_connect(&cfg.smtp_host, tcp).await?);
                s.ehlo(&self.hostname).await?;
                s.deliver(cfg, auth, &message).await
            }
            SmtpSecurity::None => {
                // Validation allows this only to a loopback relay, and never with AUTH.
                let mut s = Smtp::new(tcp);
                s.expect(220).await?;
                s.ehlo(&self.hostname).await?;
                s.deliver(cfg, None, &message).await
            }
        }
    }
}

async fn retry<F, Fut>(mut f: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    for delay in [0u64, 2, 10] {
        tokio::time::sleep(Duration::from_secs(delay)).await;
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn tls_connect(
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let config = kopa_web::outbound::tls_config();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| "bad SMTP host name".to_owned())?;
    tokio::time::timeout(
        STEP_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_owned())?
    .map_err(|e| format!("TLS handshake failed: {e}"))
}

struct Smtp<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smtp<S> {
    fn new(io: S) -> Self {
        Self {
            io: BufReader::new(io),
        }
    }

    fn into_inner(self) -> Result<S, String> {
        if !self.io.buffer().is_empty() {
            // Anything sent before the TLS handshake would be an injection (RFC 3207 §5).
            return Err("the server sent data before the TLS handshake".into());
        }
        Ok(self.io.into_inner())
    }

    /// Reads one reply (all its lines); returns its code and text lines.
    async fn reply(&mut self) -> Result<(u16, Vec<String>), String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if lines.len() >= MAX_REPLY_LINES {
                return Err("the SMTP reply is too long".into());
            }
            let mut bounded = (&mut self.io).take(MAX_REPLY_LINE);
            let n = tokio::time::timeout(STEP_TIMEOUT, bounded.read_line(&mut line))
                .await
                .map_err(|_| "the SMTP server did not answer".to_owned())?
                .map_err(|e| format!("SMTP read failed: {}", e.kind()))?;
            if n == 0 {
                return Err("the SMTP server closed the connection".into());
            }
            if !line.ends_with('\n') {
                return Err("an SMTP reply line is too long".into());
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| "malformed SMTP reply".to_owned())?;
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, lines));
            }
        }
    }

    async fn expect(&mut self, code: u16) -> Result<Vec<String>, String> {
        let (got, lines) = self.reply().await?;
        if got == code {
            Ok(lines)
        } else {
            Err(format!(
                "SMTP {got}: {}",
                lines.first().map(String::as_str).unwrap_or_default()
            ))
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let io = self.io.get_mut();
        tokio::time::timeout(STEP_TIMEOUT, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .map_err(|_| "SMTP write timed out".to_owned())?
        .map_err(|e| format!("SMTP write failed: {}", e.kind()))
    }

    async fn command(&mut self, line: &str, code: u16) -> Result<Vec<String>, String> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.expect(code).await
    }

    async fn ehlo(&mut self, host: &str) -> Result<Vec<String>, String> {
        // An address goes in as an address literal (RFC 5321 §4.1.3).
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => format!("[{ip}]"),
            Ok(std::net::IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
            Err(_) => host.to_owned(),
        };
        self.command(&format!("EHLO {name}"), 250).await
    }

    async fn deliver(
        &mut self,
        cfg: &EmailConfig,
        auth: Option<(&str, &kopa_config::Secret)>,
        message: &str,
    ) -> Result<(), String> {
        if let Some((user, password)) = auth {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("\0{user}\0{}", password.expose()));
            // The password is never part of an error message.
            self.command(&format!("AUTH PLAIN {token}"), 235)
                .await
                .map_err(|_| "SMTP authentication refused".to_owned())?;
        }
        self.command(&format!("MAIL FROM:<{}>", cfg.from), 250)
            .await?;
        for to in &cfg.to {
            // 251: not local, will forward (RFC 5321 §3.4); also accepted.
            self.write(format!("RCPT TO:<{to}>\r\n").as_bytes()).await?;
            let (code, lines) = self.reply().await?;
            if code != 250 && code != 251 {
                return Err(format!(
                    "SMTP {code}: {}",
                    lines.first().map(String::as_str).unwrap_or_default()
                ));
            }
        }
        self.command("DATA", 354).await?;
        // The body is base64 and the headers are ours, so no line starts with a dot.
        self.write(message.as_bytes()).await?;
        self.command(".", 250).await?;
        let _ = self.command("QUIT", 221).await;
        Ok(())
    }
}

/// An RFC 2047 encoded word (or several) for a UTF-8 header value.
fn encode_header(text: &str) -> String {
    if text.is_ascii() {
        return text.to_owned();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        // 45 bytes of UTF-8 encode to 60 base64 characters: each word stays under 75.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// The whole message, CRLF line ends, ready for DATA.
pub fn compose(
    cfg: &EmailConfig,
    a: &Alert,
    hostname: &str,
    base_url: &str,
    now_secs: u64,
) -> String {
    let state_lv = match a.state {
        AlertState::Firing => "AKTĪVS",
        AlertState::Resolved => "ATRISINĀTS",
        AlertState::Pending => "GAIDA",
    };
    let state_en = match a.state {
        AlertState::Firing => "FIRING",
        AlertState::Resolved => "RESOLVED",
        AlertState::Pending => "PENDING",
    };
    let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let subject = format!(
        "[Kopa] {state_lv}/{state_en}: {} / {}",
        a.title_lv, a.title_en
    );
    let value = a
        .value
        .map(|v| format!("{v}"))
        .unwrap_or_else(|| "-".into());
    let body = format!(
        "{state_lv}: {}\n{state_en}: {}\n\nSvarīgums / severity: {:?}\nPazīmes / labels: {}\nVērtība / value: {value}\nKopš / since: {}\n\n{base_url}/security\n",
        a.title_lv,
        a.title_en,
        a.severity,
        labels.join(", "),
        kopa_store::audit::format_rfc3339_ms(a.since_ms),
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
    let wrapped: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let date = rfc5322_date(now_secs);
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}.{now_secs}@{hostname}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\nAuto-Submitted: auto-generated\r\n\r\n{body}\r\n",
        from = cfg.from,
        to = cfg.to.join(", "),
        subject = encode_header(&subject),
        id = a.id,
        body = wrapped.join("\r\n"),
    )
}

/// `Thu, 26 Nov 2026 19:53:39 +0000`.
fn rfc5322_date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_headers_and_signatures() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_722_819),
            "Thu, 26 Nov 2026 19:53:39 +0000"
        );
        assert_eq!(encode_header("plain"), "plain");
        let enc = encode_header("Daudz neveiksmīgu pieteikšanos — ļoti daudz, ļoti ļoti daudz");
        for word in enc.split("\r\n ") {
            assert!(word.len() <= 75, "{word}");
            assert!(word.starts_with("=?UTF-8?B?"));
        }
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", 0, b"");
        assert!(sig.starts_with("t=0,v1="));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"Jefe");
        let want = aws_lc_rs::hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(want.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
