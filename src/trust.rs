//! The certificate authorities outbound TLS trusts: the Admin API client, the webhook, Slack
//! and PagerDuty channels and SMTP all verify with the system's certificate store, or with
//! the PEM file `SSL_CERT_FILE` and the folders `SSL_CERT_DIR` (a `:`-separated list) name
//! instead of it; SMTP adds `[notify.email] ca_file` on top. These are the words errors use
//! when that store is the reason a connection or a client failed.

/// Where a corporate CA can be added, for errors that end at an untrusted certificate.
const HOW_TO_TRUST: &str = "behind a proxy that inspects TLS, add its CA certificate to the \
     system's store (update-ca-certificates), or add the folder holding it with \
     SSL_CERT_DIR=/etc/ssl/certs:/that/folder, or set SSL_CERT_FILE to a PEM file of every \
     authority to trust (it replaces the system's store)";

/// What to add to a failed request's text when TLS refused the server's certificate as
/// signed by no authority this machine trusts (rustls: `UnknownIssuer`), which is what a
/// TLS-inspecting corporate proxy or a private gateway presents.
pub fn untrusted_hint(text: &str) -> Option<String> {
    text.contains("UnknownIssuer").then(|| {
        format!(
            "the server's certificate is signed by no certificate authority this machine \
             trusts: {HOW_TO_TRUST}"
        )
    })
}

/// What to add to a failed SMTP handshake's text when the relay's certificate is signed by
/// no authority this machine trusts, as an internal relay's often is.
pub fn smtp_untrusted_hint(text: &str) -> Option<String> {
    text.contains("UnknownIssuer").then(|| {
        "the server's certificate is signed by no certificate authority this machine \
         trusts: name the PEM file of the relay's CA certificate with `ca_file` in \
         [notify.email], which adds it to the system's store"
            .to_owned()
    })
}

/// The text of an HTTP client that could not be built, with its causes, and why when the
/// reason is that no certificate authority could be loaded.
pub fn build_error(err: &reqwest::Error) -> String {
    let mut text =
        crate::notify::transport::chain_onto(err.to_string(), std::error::Error::source(err));
    if text.contains("No CA certificates were loaded") {
        text.push_str(&format!(
            " ({})",
            no_authorities(&|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
        ));
    }
    text
}

/// Why no certificate authority was loaded, as the variables read through `env` tell.
fn no_authorities(env: &impl Fn(&str) -> Option<String>) -> String {
    let named: Vec<String> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .into_iter()
        .filter_map(|name| env(name).map(|value| format!("{name} = `{value}`")))
        .collect();
    if named.is_empty() {
        "the system's certificate store holds no certificate authority: install the \
         ca-certificates package, or name a PEM file of the authorities to trust with \
         SSL_CERT_FILE"
            .to_owned()
    } else {
        format!(
            "{} replaces the system's certificate store, and no certificate could be read \
             there: name a readable PEM file (SSL_CERT_FILE) or folders of them \
             (SSL_CERT_DIR, `:`-separated), or unset it",
            named.join(" and ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_authorities_names_the_variables_that_replaced_the_store_or_the_package() {
        let set = |name: &str| (name == "SSL_CERT_FILE").then(|| "/etc/corp/ca.pem".to_owned());
        let text = no_authorities(&set);
        assert!(
            text.starts_with("SSL_CERT_FILE = `/etc/corp/ca.pem` replaces"),
            "{text}"
        );
        assert!(no_authorities(&|_| None).contains("ca-certificates package"));
    }

    #[test]
    fn an_unknown_issuer_is_told_every_way_to_trust_a_corporate_ca() {
        let hint = untrusted_hint("invalid peer certificate: UnknownIssuer").unwrap();
        for way in [
            "update-ca-certificates",
            "SSL_CERT_DIR=/etc/ssl/certs:",
            "SSL_CERT_FILE",
        ] {
            assert!(hint.contains(way), "{hint}");
        }
        assert_eq!(untrusted_hint("connection refused"), None);
    }
}
