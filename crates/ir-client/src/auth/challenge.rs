//! `WWW-Authenticate` challenges (RFC 7235) as registries send them:
//! `Bearer realm="…",service="…",scope="…"` (the distribution token flow)
//! and `Basic realm="…"`.

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};

/// Longest header value read.
const MAX_HEADER: usize = 8 * 1024;
/// Most parameters read from one challenge.
const MAX_PARAMS: usize = 16;
/// Most `WWW-Authenticate` headers looked at.
const MAX_HEADERS: usize = 8;

/// What a registry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// A token from `realm`.
    Bearer {
        /// The token endpoint's URL.
        realm: String,
        /// `service`, passed on to the endpoint.
        service: Option<String>,
        /// `scope`, passed on to the endpoint.
        scope: Option<String>,
    },
    /// HTTP Basic authentication.
    Basic,
}

/// The challenge of a 401 answer: the first `Bearer` one, else `Basic`.
pub fn of(headers: &HeaderMap) -> Option<Challenge> {
    let mut basic = false;
    for value in headers.get_all(WWW_AUTHENTICATE).iter().take(MAX_HEADERS) {
        let Ok(text) = value.to_str() else { continue };
        match parse(text) {
            Some(c @ Challenge::Bearer { .. }) => return Some(c),
            Some(Challenge::Basic) => basic = true,
            None => {}
        }
    }
    basic.then_some(Challenge::Basic)
}

/// Parses the first challenge of one header value.
pub fn parse(text: &str) -> Option<Challenge> {
    if text.len() > MAX_HEADER {
        return None;
    }
    let text = text.trim_start();
    let end = text
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(text.len());
    let (scheme, mut rest) = text.split_at(end);
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (mut realm, mut service, mut scope) = (None, None, None);
    for _ in 0..MAX_PARAMS {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            break;
        }
        let key_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after = rest[key_end..].trim_start();
        // A token not followed by '=' starts the next challenge.
        let Some(after) = after.strip_prefix('=') else {
            break;
        };
        if key.is_empty() {
            return None;
        }
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            quoted_string(quoted)?
        } else {
            let end = after.find([',', ' ', '\t']).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
        rest = next;
    }
    Some(Challenge::Bearer {
        realm: realm.filter(|r| !r.is_empty())?,
        service,
        scope,
    })
}

/// A quoted string's content (after the opening quote) and what follows
/// its closing quote; `\x` stands for `x`.
fn quoted_string(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
        }
    }

    #[test]
    fn parses_registry_challenges() {
        assert_eq!(
            parse(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull""#
            ),
            Some(bearer(
                "https://auth.example/token",
                Some("registry.example"),
                Some("repository:team/app:pull")
            ))
        );
        assert_eq!(
            parse(r#"bearer realm=https://a/t, scope="repository:a:pull,push""#),
            Some(bearer("https://a/t", None, Some("repository:a:pull,push")))
        );
        assert_eq!(
            parse(r#"Bearer realm="https://a/\"t\"""#),
            Some(bearer("https://a/\"t\"", None, None))
        );
        assert_eq!(parse(r#"Basic realm="Registry""#), Some(Challenge::Basic));
        assert_eq!(
            parse(r#"Bearer realm="https://a/t", Basic realm="x""#),
            Some(bearer("https://a/t", None, None))
        );
    }

    #[test]
    fn refuses_what_is_not_a_usable_challenge() {
        for bad in [
            "",
            "Negotiate abc",
            "Bearer",
            r#"Bearer service="x""#,
            r#"Bearer realm="unterminated"#,
            r#"Bearer realm="""#,
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(
            parse(&format!("Bearer realm=\"{}\"", "a".repeat(MAX_HEADER))),
            None
        );
    }

    #[test]
    fn prefers_bearer_over_basic_across_headers() {
        let mut h = HeaderMap::new();
        h.append(WWW_AUTHENTICATE, "Basic realm=\"r\"".parse().unwrap());
        h.append(
            WWW_AUTHENTICATE,
            "Bearer realm=\"https://a/t\"".parse().unwrap(),
        );
        assert_eq!(of(&h), Some(bearer("https://a/t", None, None)));
        h.remove(WWW_AUTHENTICATE);
        h.append(WWW_AUTHENTICATE, "Basic realm=\"r\"".parse().unwrap());
        assert_eq!(of(&h), Some(Challenge::Basic));
        assert_eq!(of(&HeaderMap::new()), None);
    }
}
