//! `GET /`: the farm wall, one page embedded in the binary (HTML, CSS and JS, no build step).
//!
//! Tiles refresh from snapshots (two at a time), not from live streams: browsers open at most six
//! HTTP/1.1 connections per host, so a wall of MJPEG tiles stalls. Badges follow `/api/events`.

use hyper::{Response, StatusCode};

use super::{api, Body};

const PAGE: &str = include_str!("wall.html");

/// The wall, told how often a tile refreshes (seconds).
pub fn page(refresh: std::time::Duration) -> Response<Body> {
    let html = PAGE.replacen(
        "<body>",
        &format!("<body data-refresh=\"{}\">", refresh.as_secs_f64()),
        1,
    );
    api::html(StatusCode::OK, html)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_is_small_and_self_contained() {
        let page = super::PAGE;
        assert!(page.len() < 30 * 1024, "{} bytes", page.len());
        for outside in ["http://", "https://", "//cdn", "<link", "src=\"http"] {
            assert!(
                !page.contains(outside),
                "the wall loads nothing from elsewhere ({outside})"
            );
        }
    }
}
