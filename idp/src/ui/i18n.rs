//! Latvian and English texts of the IdP pages. Latvian is the default; `?lang=en` or the
//! browser's `Accept-Language` switch to English.

/// A page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// Latviešu.
    #[default]
    Lv,
    /// English.
    En,
}

impl Lang {
    /// The BCP 47 tag for `<html lang>`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Lv => "lv",
            Lang::En => "en",
        }
    }

    /// The other language (for the switch link).
    pub fn other(self) -> Lang {
        match self {
            Lang::Lv => Lang::En,
            Lang::En => Lang::Lv,
        }
    }

    /// From an explicit `lang` parameter or cookie value.
    pub fn parse(tag: &str) -> Option<Lang> {
        match tag.trim().to_ascii_lowercase().as_str() {
            "lv" => Some(Lang::Lv),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The first of lv/en in an `Accept-Language` header by preference, Latvian if none.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("lv") => Lang::Lv,
                Some("en") => Lang::En,
                _ => continue,
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or_default()
    }
}

/// Every text of the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Text {
    SignInTitle,
    Username,
    UsernameHint,
    Password,
    Institution,
    InstitutionAny,
    SignIn,
    BadCredentials,
    Unavailable,
    Locked,
    Throttled,
    InvalidInput,
    FormExpired,
    MfaTitle,
    MfaCode,
    MfaHint,
    Verify,
    MfaFailed,
    EnrolTitle,
    EnrolIntro,
    EnrolSecret,
    RecoveryTitle,
    RecoveryIntro,
    Continue,
    SignedInTitle,
    Name,
    Roles,
    Tenant,
    SignOut,
    SignOutConfirm,
    SignedOut,
    SignInAgain,
    LanguageSwitch,
    SkipToContent,
    Footer,
    ConsentTitle,
    ConsentAsk,
    Allow,
    Deny,
    RequestErrorTitle,
    SamlPostTitle,
    SamlPostExplain,
    SloTitle,
    SloExplain,
    SloStepDone,
    SloStepFailed,
    PartialLogout,
}

impl Text {
    /// The text in `lang`.
    pub fn get(self, lang: Lang) -> &'static str {
        use Text::*;
        let (lv, en) = match self {
            SignInTitle => ("Pieteikšanās", "Sign in"),
            Username => ("Lietotājvārds", "Username"),
            UsernameHint => (
                "Ievadiet vārds@iestāde.lv vai izvēlieties iestādi zemāk.",
                "Enter name@institution.lv or choose your institution below.",
            ),
            Password => ("Parole", "Password"),
            Institution => ("Iestāde", "Institution"),
            InstitutionAny => ("Pēc lietotājvārda domēna", "From the username's domain"),
            SignIn => ("Pieteikties", "Sign in"),
            BadCredentials => (
                "Nepareizs lietotājvārds vai parole.",
                "Wrong username or password.",
            ),
            Unavailable => (
                "Iestādes katalogs pašlaik nav pieejams. Mēģiniet vēlāk.",
                "The institution's directory is unavailable. Please try again later.",
            ),
            Locked => (
                "Konts ir īslaicīgi bloķēts pārāk daudzu neveiksmīgu mēģinājumu dēļ.",
                "The account is temporarily locked after too many failed attempts.",
            ),
            Throttled => (
                "Pārāk daudz mēģinājumu. Pagaidiet brīdi un mēģiniet vēlreiz.",
                "Too many attempts. Wait a moment and try again.",
            ),
            InvalidInput => (
                "Pārbaudiet ievadīto lietotājvārdu un iestādi.",
                "Check the username and institution.",
            ),
            FormExpired => (
                "Veidlapa ir novecojusi. Lūdzu, mēģiniet vēlreiz.",
                "The form has expired. Please try again.",
            ),
            MfaTitle => ("Otrais faktors", "Second factor"),
            MfaCode => ("Vienreizējais kods", "One-time code"),
            MfaHint => (
                "Kods no autentifikatora lietotnes vai viens no rezerves kodiem.",
                "The code from your authenticator app, or one of your recovery codes.",
            ),
            Verify => ("Apstiprināt", "Verify"),
            MfaFailed => ("Kods nav derīgs.", "The code is not valid."),
            EnrolTitle => ("Otrā faktora iestatīšana", "Set up a second factor"),
            EnrolIntro => (
                "Jūsu lomai nepieciešams otrais faktors. Noskenējiet kodu autentifikatora lietotnē un ievadiet tās rādīto kodu.",
                "Your role requires a second factor. Scan the code with an authenticator app and enter the code it shows.",
            ),
            EnrolSecret => ("Vai ievadiet šo atslēgu", "Or enter this key"),
            RecoveryTitle => ("Rezerves kodi", "Recovery codes"),
            RecoveryIntro => (
                "Saglabājiet šos kodus drošā vietā. Katru var izmantot vienu reizi, ja autentifikators nav pieejams. Tie vairs netiks rādīti.",
                "Keep these codes somewhere safe. Each works once when your authenticator is not at hand. They will not be shown again.",
            ),
            SignedInTitle => ("Jūs esat pieteicies", "You are signed in"),
            Name => ("Vārds", "Name"),
            Roles => ("Lomas", "Roles"),
            Tenant => ("Iestāde", "Institution"),
            SignOut => ("Iziet", "Sign out"),
            SignOutConfirm => ("Vai tiešām iziet?", "Sign out now?"),
            SignedOut => ("Jūs esat izgājis.", "You are signed out."),
            SignInAgain => ("Pieteikties vēlreiz", "Sign in again"),
            LanguageSwitch => ("English", "Latviski"),
            SkipToContent => ("Pāriet uz saturu", "Skip to content"),
            ConsentTitle => ("Piekļuves atļauja", "Allow access"),
            ConsentAsk => (
                "Lietotne lūdz piekļuvi šiem datiem par jums:",
                "The application asks for access to this information about you:",
            ),
            Allow => ("Atļaut", "Allow"),
            Deny => ("Neatļaut", "Deny"),
            RequestErrorTitle => ("Pieprasījums nav derīgs", "The request is not valid"),
            SamlPostTitle => ("Pārsūta uz pakalpojumu", "Returning to the service"),
            SamlPostExplain => (
                "Ja pārlūks jūs nepārsūta automātiski, nospiediet „Turpināt”.",
                "If your browser does not continue by itself, press Continue.",
            ),
            Continue => ("Turpināt", "Continue"),
            SloTitle => ("Iziešana no pakalpojumiem", "Signing out of services"),
            SloExplain => (
                "Jūs tiekat izrakstīts no visiem šīs sesijas pakalpojumiem. Lapa turpinās pati.",
                "You are being signed out of every service of this session. The page goes on by itself.",
            ),
            SloStepDone => ("Izrakstīts", "Signed out"),
            SloStepFailed => ("Izrakstīšanās nav apstiprināta", "Sign-out not confirmed"),
            PartialLogout => (
                "Daži pakalpojumi neapstiprināja izrakstīšanos. Aizveriet pārlūku, lai to pabeigtu.",
                "Some services did not confirm the sign-out. Close your browser to finish it.",
            ),
            Footer => (
                "Kopa — pašvaldību koplietošanas platforma",
                "Kopa — shared platform of Latvian municipalities",
            ),
        };
        match lang {
            Lang::Lv => lv,
            Lang::En => en,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_prefers_by_weight() {
        assert_eq!(
            Lang::from_accept_language("en-GB,en;q=0.9,lv;q=0.8"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("de,lv;q=0.5,en;q=0.4"), Lang::Lv);
        assert_eq!(Lang::from_accept_language("de"), Lang::Lv);
        assert_eq!(Lang::from_accept_language(""), Lang::Lv);
    }
}
