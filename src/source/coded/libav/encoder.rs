//! One camera's H.264 encoder in the helper (farmcam's side): pictures in (a JPEG as the camera
//! sent it, decoded in the helper, or raw I420), coded pictures out. The helper process is the
//! decoders' one: an encoder that crashes or hangs ends like a decoder does (see the module
//! above), never farmcam.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;

use super::{wire, EncodeSettings, Event, Helper, SharedDecoder, NAME};
use crate::media::codec::I420;

/// Pictures queued for the encoder before it counts as behind (a picture is then skipped): a
/// software encoder keeping up has one in work, and one waiting.
const MAX_IN_FLIGHT: usize = 3;

/// What an encoder session hears.
#[derive(Debug)]
pub enum Encoded {
    /// The encoder opened (again, after a change of size): its name.
    Opened(String),
    /// One coded picture, Annex B.
    Packet { data: Bytes, keyframe: bool },
}

/// One camera's encoder in the helper.
pub struct EncodeSession {
    helper: Arc<Helper>,
    slot: u32,
    events: mpsc::UnboundedReceiver<Event>,
    /// Pictures sent and not yet encoded.
    in_flight: usize,
    finished: bool,
    ended: Option<String>,
    /// The encoder could not be opened or failed (not that the helper died).
    refused: bool,
}

impl EncodeSession {
    /// An encoder slot with `settings` (the encoder itself opens at the first picture).
    pub fn open(shared: &Arc<SharedDecoder>, settings: &EncodeSettings) -> Result<EncodeSession, String> {
        let helper = shared.helper()?;
        let (slot, events) = helper.attach(wire::ENCODE, Bytes::from(settings.to_text()))?;
        Ok(EncodeSession {
            helper,
            slot,
            events,
            in_flight: 0,
            finished: false,
            ended: None,
            refused: false,
        })
    }

    /// Whether another picture may be queued now (else it is skipped: the encoder is behind).
    pub fn ready(&self) -> bool {
        !self.finished && self.ended.is_none() && self.in_flight < MAX_IN_FLIGHT
    }

    /// Queue a JPEG picture (`key`: encode it as a keyframe). False when it was not queued.
    pub fn feed_jpeg(&mut self, jpeg: &[u8], key: bool) -> bool {
        let mut p = BytesMut::with_capacity(1 + jpeg.len());
        p.put_u8(if key { wire::KEYFRAME } else { 0 });
        p.put_slice(jpeg);
        self.queue(wire::JPEG_PICTURE, p.freeze())
    }

    /// Queue a raw picture (even width and height; `limited`: its samples are limited range).
    pub fn feed_raw(&mut self, picture: &I420, limited: bool, key: bool) -> bool {
        if !self.ready() {
            return false;
        }
        let mut p = BytesMut::with_capacity(9 + picture.y.len() + 2 * picture.u.len());
        p.put_u8((u8::from(key) * wire::KEYFRAME) | (u8::from(limited) * wire::LIMITED));
        p.put_u32_le(picture.size.width);
        p.put_u32_le(picture.size.height);
        p.put_slice(&picture.y);
        p.put_slice(&picture.u);
        p.put_slice(&picture.v);
        self.queue(wire::RAW_PICTURE, p.freeze())
    }

    fn queue(&mut self, kind: u8, payload: Bytes) -> bool {
        if !self.ready() || !self.helper.send(self.slot, kind, payload) {
            return false;
        }
        self.in_flight += 1;
        true
    }

    /// What the encoder says next; `None` once the session ended (see [`Self::exit_reason`]).
    pub async fn next(&mut self) -> Option<Encoded> {
        loop {
            if self.ended.is_some() {
                return None;
            }
            match self.events.recv().await {
                Some(Event::Opened(name)) => return Some(Encoded::Opened(name)),
                Some(Event::Packet { data, keyframe }) => return Some(Encoded::Packet { data, keyframe }),
                Some(Event::Done(_)) => self.in_flight = self.in_flight.saturating_sub(1),
                Some(Event::Picture(_)) => {}
                Some(Event::Ended { why, .. }) => self.ended = Some(why),
                Some(Event::Refused(why)) => {
                    self.refused = true;
                    self.ended = Some(why);
                }
                None => self.ended = Some(format!("the {NAME} ended")),
            }
        }
    }

    /// Whether the encoder could not be opened or failed (rather than the helper dying).
    pub fn refused(&self) -> bool {
        self.refused
    }

    pub fn exit_reason(&self) -> String {
        self.ended.clone().unwrap_or_else(|| format!("the {NAME} ended"))
    }
}

impl Drop for EncodeSession {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            self.helper.send(self.slot, wire::CLOSE, Bytes::new());
        }
        self.helper.detach(self.slot);
    }
}
