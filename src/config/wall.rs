//! `[[wall.gateway]]`: other farmcam gateways whose cameras this gateway's wall shows next to its
//! own (relayed through this gateway: see `http::relay`).

use serde::Deserialize;
use toml::Spanned;

use super::diag::Validator;
use super::values::Secret;
use super::values::{parse_http_base, valid_id};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WallGateway {
    /// Shown on the wall and used in `/gateways/NAME/…`.
    pub name: String,
    /// `http://HOST:PORT` (no trailing slash).
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Sent as `Authorization: Bearer …` to that gateway, never to the browser.
    pub token: Option<Secret>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWall {
    #[serde(default)]
    gateway: Vec<RawGateway>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    name: Spanned<String>,
    url: Spanned<String>,
    token: Option<Spanned<String>>,
}

impl Validator<'_> {
    pub(super) fn wall(&mut self, raw: &RawWall) -> Vec<WallGateway> {
        let mut out: Vec<WallGateway> = Vec::new();
        for (i, g) in raw.gateway.iter().enumerate() {
            let at = |k: &str| format!("wall.gateway[{i}].{k}");
            let name = g.name.get_ref().clone();
            if !valid_id(&name) {
                self.problem(
                    Some(g.name.span()),
                    &at("name"),
                    &format!("{name:?} is not a valid name: use lowercase letters, digits, '-' and '_' (e.g. \"shelf-b\")"),
                );
            } else if out.iter().any(|o| o.name == name) {
                self.problem(
                    Some(g.name.span()),
                    &at("name"),
                    &format!("{name:?} is used by another gateway"),
                );
            }
            let Some((url, host, port)) = parse_http_base(g.url.get_ref(), 80) else {
                self.problem(
                    Some(g.url.span()),
                    &at("url"),
                    "write the gateway's address as \"http://HOST:PORT\" (e.g. \"http://shelf-b.local:8080\"); https and paths are not supported",
                );
                continue;
            };
            let token = g.token.as_ref().map(|t| Secret(t.get_ref().clone()));
            out.push(WallGateway {
                name,
                url,
                host,
                port,
                token,
            });
        }
        out
    }
}
