//! The forward proxy outbound HTTPS goes through (the Admin API client and the webhook,
//! Slack and PagerDuty channels), as the environment names it: `HTTPS_PROXY`, `HTTP_PROXY`
//! and `ALL_PROXY` (or their lower-case forms), with `NO_PROXY` for the hosts reached
//! directly. The HTTP stack reads the variables itself; this module checks them first, keeps
//! their credentials out of logs, keeps loopback destinations off the proxy, and says so when
//! it was the proxy that failed.

use secrecy::SecretString;
use url::Url;

/// The proxy variables, upper case first in each pair: the HTTP stack uses the first of a
/// pair that is set, even when it is empty (and then no proxy).
const PAIRS: [[&str; 2]; 3] = [
    ["HTTPS_PROXY", "https_proxy"],
    ["HTTP_PROXY", "http_proxy"],
    ["ALL_PROXY", "all_proxy"],
];

/// A proxy variable whose value cannot be used. The HTTP stack would not say so: a value it
/// cannot parse is ignored (every request then goes direct), and an unencoded `/`, `#`, `?`
/// or `@` in the password makes it parse as another host that holds part of the password,
/// which then reaches logs and errors.
#[derive(Debug, thiserror::Error)]
#[error("{variable} (`{shown}`) is not a proxy orgwarden can use: {reason}")]
pub struct ProxyError {
    /// The variable.
    pub variable: &'static str,
    /// Its value without any user and password.
    pub shown: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The proxy in effect for a destination, as errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyInUse {
    /// The variable it came from.
    pub variable: &'static str,
    /// The proxy's scheme, host and port (never its user and password).
    pub proxy: String,
}

/// The variables in effect, with their values, read through `env`.
fn in_effect(env: &impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    PAIRS
        .iter()
        .filter_map(|pair| pair.iter().find_map(|name| Some((*name, env(name)?))))
        .collect()
}

/// Checks the proxy variables that apply to requests to `dest` (none for a loopback
/// destination, which no proxy is used for), and registers the credentials they hold as
/// secrets, so that they are scrubbed from every log line and error from now on. Only
/// those: `HTTP_PROXY` serves plain-http destinations, which orgwarden reaches on loopback
/// only, so a malformed one set for other programs is no reason to refuse a run.
pub fn check_environment(dest: &Url) -> Result<(), ProxyError> {
    check_with(dest, &|name| std::env::var(name).ok())
}

fn check_with(dest: &Url, env: &impl Fn(&str) -> Option<String>) -> Result<(), ProxyError> {
    if is_loopback(dest) {
        return Ok(());
    }
    let own = if dest.scheme() == "https" { 0 } else { 1 };
    for (variable, value) in in_effect(env) {
        if PAIRS[own].contains(&variable) || PAIRS[2].contains(&variable) {
            check(variable, &value)?;
        }
    }
    Ok(())
}

/// Checks one variable's value, registering its credentials as secrets.
pub fn check(variable: &'static str, value: &str) -> Result<(), ProxyError> {
    if value.is_empty() {
        return Ok(());
    }
    let bad = |reason: &str| ProxyError {
        variable,
        shown: crate::client::shown_url(value),
        reason: reason.to_owned(),
    };
    const ENCODE: &str = "a `/`, `?`, `#`, `@` or `%` in the user or password is written \
                          %2F, %3F, %23, %40 or %25";
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(&format!(
            "it holds a space or a control character ({ENCODE}, a space %20)"
        )));
    }
    let rest = match value.split_once("://") {
        Some((scheme, rest)) => {
            match scheme.to_ascii_lowercase().as_str() {
                "http" | "https" => {}
                "socks4" | "socks4a" | "socks5" | "socks5h" => {
                    return Err(bad(
                        "SOCKS proxies are not supported; name the proxy's HTTP port \
                         (http://host:port)",
                    ));
                }
                other => {
                    return Err(bad(&format!(
                        "the scheme `{other}` is not http or https (http://host:port)"
                    )));
                }
            }
            rest
        }
        None => value,
    };
    if let Some((userinfo, _)) = rest.rsplit_once('@') {
        if userinfo.contains(['/', '?', '#', '@']) {
            return Err(bad(&format!(
                "the user or password is not percent-encoded: {ENCODE}"
            )));
        }
        register_credentials(value, userinfo);
    }
    // The parser the HTTP stack itself uses: what it refuses, it would silently ignore.
    let parsed = value.parse::<hyper::Uri>().map_err(|_| {
        bad(&format!(
            "it is not a URL of the form http://[user:password@]host:port ({ENCODE})"
        ))
    })?;
    if parsed.host().is_none_or(str::is_empty) {
        return Err(bad("it names no host (http://host:port)"));
    }
    Ok(())
}

/// Registers a proxy's password in every form it can travel: as written, percent-decoded,
/// and as the `user:password` that Basic authentication base64-encodes. The whole value is
/// registered too, so a line quoting the variable shows none of it.
fn register_credentials(value: &str, userinfo: &str) {
    let Some((user, password)) = userinfo.split_once(':') else {
        return;
    };
    if password.is_empty() {
        return;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    for secret in [
        value.to_owned(),
        password.to_owned(),
        decode(password),
        format!("{}:{}", decode(user), decode(password)),
    ] {
        crate::secrets::register(&SecretString::from(secret));
    }
}

/// Whether `dest` is on this machine. A loopback destination is always reached directly: a
/// proxy elsewhere cannot reach this machine's loopback, and plain http (which orgwarden
/// allows towards loopback only) would carry the admin key or a signed body to it in clear.
fn is_loopback(dest: &Url) -> bool {
    dest.host_str().is_some_and(crate::config::is_loopback_host)
}

/// An HTTP client builder for requests to `dest`: the proxy variables honoured, except
/// towards loopback.
pub fn client_builder(dest: &Url) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    if is_loopback(dest) {
        builder.no_proxy()
    } else {
        builder
    }
}

/// The proxy a request to `dest` goes through, if any, as the environment says now.
pub fn in_use(dest: &Url) -> Option<ProxyInUse> {
    in_use_with(dest, &|name| std::env::var(name).ok())
}

fn in_use_with(dest: &Url, env: &impl Fn(&str) -> Option<String>) -> Option<ProxyInUse> {
    // Run as a CGI script, the HTTP stack uses no proxy: there HTTP_PROXY is a request's
    // `Proxy:` header, set by whoever sent the request ("httpoxy").
    if is_loopback(dest) || env("REQUEST_METHOD").is_some() {
        return None;
    }
    let effect = in_effect(env);
    let value = |pair: usize| {
        effect
            .iter()
            .find(|(name, _)| PAIRS[pair].contains(name))
            .filter(|(_, value)| !value.is_empty())
    };
    let scheme_pair = if dest.scheme() == "https" { 0 } else { 1 };
    let (variable, _) = value(scheme_pair).or_else(|| value(2))?;
    let matcher = hyper_util::client::proxy::matcher::Matcher::builder()
        .all(value(2).map(|(_, v)| v.clone()).unwrap_or_default())
        .http(value(1).map(|(_, v)| v.clone()).unwrap_or_default())
        .https(value(0).map(|(_, v)| v.clone()).unwrap_or_default())
        .no(PAIRS_NO
            .iter()
            .find_map(|name| env(name))
            .unwrap_or_default())
        .build();
    let uri = dest.as_str().parse::<hyper::Uri>().ok()?;
    let intercept = matcher.intercept(&uri)?;
    // The intercept's URI holds no user and password: they are kept apart, as its
    // authorization.
    let proxy = intercept.uri().to_string();
    Some(ProxyInUse {
        variable,
        proxy: proxy.trim_end_matches('/').to_owned(),
    })
}

/// `NO_PROXY`, upper case first.
const PAIRS_NO: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// What to add to the text of a failed request to `dest` when it went through a proxy:
/// which proxy, from which variable, and what to check, for the failures the HTTP stack
/// words as its own (`tunnel error: …`). `None` when no proxy was in the way. `host` says
/// whether the destination's host may be named (a webhook URL is a secret as a whole; its
/// host alone is not, but the channels' errors name no part of it).
pub fn explain(text: &str, dest: &Url, host: bool) -> Option<String> {
    let ProxyInUse { variable, proxy } = in_use(dest)?;
    let to = match (host, dest.host_str()) {
        (true, Some(h)) => format!("{h}:{}", dest.port_or_known_default().unwrap_or_default()),
        _ => "the destination".to_owned(),
    };
    Some(if text.contains("proxy authorization required") {
        format!(
            "the proxy {proxy}, from {variable}, refused the user and password it was given, \
             or wants some (HTTP 407): check the user:password in {variable}, where a `@`, \
             `:`, `/`, `#` or `%` in them is written %40, %3A, %2F, %23 or %25"
        )
    } else if text.contains("tunnel error: unsuccessful") {
        format!(
            "the proxy {proxy}, from {variable}, would not open a connection to {to}: it \
             answered with an error status, such as 403 when its policy does not allow the \
             host or 502 when it cannot reach it; if the host is reached without a proxy, \
             list it in NO_PROXY"
        )
    } else if text.contains("failed to create underlying connection") {
        format!(
            "the proxy {proxy} itself could not be reached: check the host and port in \
             {variable}"
        )
    } else {
        format!("through the proxy {proxy}, from {variable}")
    })
}

/// Whether `text` is a proxy's refusal of its credentials, which no retry changes.
pub fn credentials_refused(text: &str) -> bool {
    text.contains("proxy authorization required")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_usable_proxy_url_passes_with_or_without_credentials_or_scheme() {
        for value in [
            "http://proxy.corp:3128",
            "http://proxy.corp:3128/",
            "HTTP://proxy.corp:3128",
            "https://proxy.corp:3129",
            "proxy.corp:3128",
            "http://ops:s%40cr%2Fet%23@proxy.corp:3128",
            "http://[::1]:3128",
            "",
        ] {
            assert!(check("HTTPS_PROXY", value).is_ok(), "{value}");
        }
    }

    #[test]
    fn a_proxy_url_the_http_stack_would_misread_is_refused_without_its_password() {
        for (value, says) in [
            ("http://ops:pa/ssword1@proxy:3128", "percent-encoded"),
            ("http://ops:pa#ssword1@proxy:3128", "percent-encoded"),
            ("http://ops:pa?ssword1@proxy:3128", "percent-encoded"),
            ("http://ops:pa@ssword1@proxy:3128", "percent-encoded"),
            ("http://ops:pa ssword1@proxy:3128", "space"),
            (" http://proxy:3128", "space"),
            ("socks5://ops:password1@proxy:1080", "SOCKS"),
            ("ftp://proxy:21", "`ftp`"),
            ("http://", "not a URL"),
        ] {
            let err = check("HTTPS_PROXY", value).unwrap_err().to_string();
            assert!(err.contains(says), "{value}: {err}");
            assert!(err.starts_with("HTTPS_PROXY (`"), "{err}");
            assert!(!err.contains("ssword1"), "{err}");
        }
    }

    #[test]
    fn the_proxy_in_use_follows_the_destination_scheme_and_no_proxy() {
        let vars = env(&[
            ("HTTPS_PROXY", "http://ops:password1@proxy.corp:3128"),
            ("http_proxy", "http://plain.corp:8080"),
            ("NO_PROXY", "internal.corp,10.0.0.0/8"),
        ]);
        let got = in_use_with(&url("https://api.openai.com/v1"), &vars).unwrap();
        assert_eq!(got.variable, "HTTPS_PROXY");
        assert_eq!(got.proxy, "http://proxy.corp:3128");
        let got = in_use_with(&url("http://hooks.example/x"), &vars).unwrap();
        assert_eq!(got.variable, "http_proxy");
        assert_eq!(
            in_use_with(&url("https://api.internal.corp/v1"), &vars),
            None
        );
        assert_eq!(in_use_with(&url("https://10.1.2.3/v1"), &vars), None);
        // This machine is never reached through a proxy, with or without NO_PROXY.
        assert_eq!(in_use_with(&url("http://127.0.0.1:8787/v1"), &vars), None);
        assert_eq!(in_use_with(&url("https://localhost/v1"), &vars), None);
    }

    #[test]
    fn only_the_variables_that_serve_the_destination_are_checked() {
        let vars = env(&[
            ("HTTP_PROXY", "http://ops:pa#ss@plain.corp:8080"),
            ("https_proxy", "http://proxy.corp:3128"),
        ]);
        assert!(check_with(&url("https://api.openai.com/v1"), &vars).is_ok());
        let vars = env(&[("ALL_PROXY", "socks5://proxy.corp:1080")]);
        let err = check_with(&url("https://api.openai.com/v1"), &vars).unwrap_err();
        assert_eq!(err.variable, "ALL_PROXY");
        assert!(check_with(&url("http://127.0.0.1:8787/v1"), &vars).is_ok());
    }

    #[test]
    fn under_cgi_no_proxy_is_named_as_the_http_stack_then_uses_none() {
        let vars = env(&[
            ("HTTPS_PROXY", "http://proxy.corp:3128"),
            ("REQUEST_METHOD", "GET"),
        ]);
        assert_eq!(in_use_with(&url("https://api.openai.com/v1"), &vars), None);
    }

    #[test]
    fn all_proxy_serves_a_scheme_whose_own_variable_is_unset_or_empty() {
        let vars = env(&[("HTTPS_PROXY", ""), ("all_proxy", "http://all.corp:3128")]);
        let got = in_use_with(&url("https://api.openai.com/v1"), &vars).unwrap();
        assert_eq!(
            (got.variable, got.proxy.as_str()),
            ("all_proxy", "http://all.corp:3128")
        );
        assert_eq!(
            in_use_with(&url("https://api.openai.com/v1"), &env(&[])),
            None
        );
    }
}
