//! Clients that poll a camera's snapshots (Mainsail's `mjpegstreamer-adaptive` at 10 a second,
//! a script): each gets a picture it has not had yet, and its polling counts as a rate demand
//! (an H.264 camera decodes every picture while it polls, and stops when it stops).
//!
//! A client is polling when its requests come less than [`POLLING`] apart. It then holds a
//! subscription wanting its request rate, dropped [`LINGER`] polling intervals after its last
//! request (at least [`MIN_LINGER`]). A client is a browser where it can be told apart (it
//! carries farmcam's cookie: two people behind one proxy are two clients), else its address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::pump::Subscription;

/// Requests closer than this are polling (a wall tile's once a second is a glance, not a poll).
pub const POLLING: Duration = Duration::from_millis(800);
/// A poller's demand outlives its last request by this many of its intervals...
const LINGER: u32 = 3;
/// ...and by at least this long.
const MIN_LINGER: Duration = Duration::from_secs(1);
/// Clients followed per camera; beyond that, new ones are served as single requests.
const MAX_CLIENTS: usize = 64;
/// Browsers followed per address; beyond that, the address's further browsers are one client.
const MAX_BROWSERS: usize = 16;

/// Who asks: a browser told apart by its cookie (behind a proxy, many share an address), or an
/// address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Poller {
    Address(IpAddr),
    Browser(IpAddr, u64),
}

impl Poller {
    fn address(&self) -> IpAddr {
        match *self {
            Poller::Address(ip) | Poller::Browser(ip, _) => ip,
        }
    }
}

#[derive(Default)]
struct Client {
    last: Option<Instant>,
    /// The polling interval, smoothed.
    interval: Option<Duration>,
    /// The sequence number of the last frame this client got.
    seen: u64,
    /// The rate demand while polling.
    demand: Option<Subscription>,
}

impl Client {
    fn expired(&self, now: Instant) -> bool {
        let linger = self.interval.map_or(MIN_LINGER, |i| (i * LINGER).max(MIN_LINGER));
        self.last.is_none_or(|t| now.duration_since(t) > linger)
    }
}

/// What a request from a polling client needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Poll {
    /// The frame it got last: it wants a newer one.
    pub seen: u64,
    /// Requests per second.
    pub rate: f64,
}

/// The polling clients of one camera.
#[derive(Default)]
pub struct Polls {
    clients: Mutex<Clients>,
}

#[derive(Default)]
struct Clients {
    by_client: HashMap<Poller, Client>,
    /// An [`expire_until_idle`] task runs.
    expiring: bool,
}

impl Clients {
    /// A browser beyond [`MAX_BROWSERS`] of its address counts as the address (a host that
    /// makes up cookies cannot take every place).
    fn fold(&self, client: Poller) -> Poller {
        if let Poller::Browser(ip, _) = client {
            let followed = self.by_client.contains_key(&client);
            let browsers = || {
                self.by_client
                    .keys()
                    .filter(|k| matches!(k, Poller::Browser(..)) && k.address() == ip)
                    .count()
            };
            if !followed && browsers() >= MAX_BROWSERS {
                return Poller::Address(ip);
            }
        }
        client
    }
}

impl Polls {
    /// A snapshot request from `client`: `Some` when it is polling. `subscribe` makes its rate
    /// demand when it starts polling. The second value: an [`expire_until_idle`] task is needed.
    pub fn request(
        &self,
        client: Poller,
        subscribe: impl FnOnce(f64) -> Subscription,
    ) -> (Option<Poll>, bool) {
        let now = Instant::now();
        let mut guard = self.clients.lock().unwrap();
        let clients = &mut *guard;
        clients.by_client.retain(|_, c| !c.expired(now));
        let client = clients.fold(client);
        if clients.by_client.len() >= MAX_CLIENTS && !clients.by_client.contains_key(&client) {
            return (None, false);
        }
        let spawn = !std::mem::replace(&mut clients.expiring, true);
        let c = clients.by_client.entry(client).or_default();
        let gap = c.last.map(|t| now.duration_since(t));
        c.last = Some(now);
        match gap {
            Some(g) if g < POLLING => {
                // Smoothed over about four requests.
                c.interval = Some(c.interval.map_or(g, |i| (i * 3 + g) / 4));
            }
            _ => {
                c.interval = None;
                c.demand = None;
                return (None, spawn);
            }
        }
        let interval = c.interval.expect("set").max(Duration::from_millis(1));
        let rate = 1.0 / interval.as_secs_f64();
        if c.demand.is_none() {
            c.demand = Some(subscribe(rate));
        }
        (Some(Poll { seen: c.seen, rate }), spawn)
    }

    /// `client` got the frame `seq`.
    pub fn delivered(&self, client: Poller, seq: u64) {
        let mut clients = self.clients.lock().unwrap();
        let client = clients.fold(client);
        if let Some(c) = clients.by_client.get_mut(&client) {
            c.seen = c.seen.max(seq);
        }
    }

    /// Forget clients that stopped polling (dropping their demand); false once none is left
    /// (the expiring task then ends).
    fn expire(&self) -> bool {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap();
        clients.by_client.retain(|_, c| !c.expired(now));
        clients.expiring = !clients.by_client.is_empty();
        clients.expiring
    }
}

/// Expire `polls` until no client is followed (run while a camera has any), or `stop`.
pub async fn expire_until_idle(polls: Arc<Polls>, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                polls.clients.lock().unwrap().by_client.clear();
                return;
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        if !polls.expire() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn browsers_behind_one_address_poll_apart() {
        let polls = Polls::default();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let not_polling = |_| unreachable!("a browser asking once a second is not polling");
        // Two browsers, each once a second, half a second apart: neither polls.
        for _ in 0..5 {
            for b in [1, 2] {
                let (poll, _) = polls.request(Poller::Browser(ip, b), not_polling);
                assert_eq!(poll, None);
                tokio::time::advance(Duration::from_millis(500)).await;
            }
        }
    }

    #[test]
    fn an_address_cannot_follow_more_than_its_share_of_browsers() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        let mut clients = Clients::default();
        for b in 0..MAX_BROWSERS as u64 {
            clients
                .by_client
                .insert(Poller::Browser(ip, b), Client::default());
        }
        assert_eq!(clients.fold(Poller::Browser(ip, 3)), Poller::Browser(ip, 3));
        assert_eq!(clients.fold(Poller::Browser(ip, 99)), Poller::Address(ip));
        assert_eq!(
            clients.fold(Poller::Browser(other, 99)),
            Poller::Browser(other, 99)
        );
        assert_eq!(clients.fold(Poller::Address(ip)), Poller::Address(ip));
    }
}
