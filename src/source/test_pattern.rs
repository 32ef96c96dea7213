//! `test:` — a moving test pattern, the demo and benchmark camera.
//!
//! Cheap by construction: the static background and every position of the moving box are encoded
//! once (with a restart marker at each 16-pixel row), so a frame is spliced from pre-encoded rows
//! and only the two rows holding the frame number and clock are encoded per frame. For an H.264
//! encoder the same picture is drawn raw (limited-range 4:2:0, no JPEG made): the background
//! converted once, then the box and the text band drawn per frame.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::OnceCell;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Common, DemandRx, Source, SourceError, Upstream, Work};
use crate::frame::Captured;
use crate::frame::Size;
use crate::media::codec::I420;
use crate::media::jpeg;
use crate::media::orientation::Op;
use crate::media::render::{fit_scale, text_cells, Canvas};
use std::sync::atomic::Ordering::Relaxed;

pub const DEFAULT_SIZE: Size = Size {
    width: 1280,
    height: 720,
};
pub const DEFAULT_FPS: u32 = 30;

const MCU: u32 = 16;
/// MCU rows holding the frame counter and clock.
const TEXT_ROWS: std::ops::Range<u32> = 1..3;
/// MCU rows the moving box travels in.
const BOX_ROWS: u32 = 4;

pub struct TestPattern {
    name: String,
    size: Size,
    fps: u32,
    /// Frames are encoded at least this often, whatever the demand (stall detection).
    keepalive: Duration,
    work: Arc<Work>,
    prepared: Arc<OnceCell<Arc<Prepared>>>,
    /// How the camera is mounted: raw pictures are turned here (the pump turns the JPEGs).
    turn: Op,
}

impl TestPattern {
    pub fn new(common: &Common) -> Self {
        let work = Arc::<Work>::default();
        work.raw.set_native(true);
        TestPattern {
            turn: common.orientation.op(),
            name: common.name.clone(),
            size: common.size.unwrap_or(DEFAULT_SIZE),
            fps: common.fps.unwrap_or(DEFAULT_FPS),
            keepalive: common.stall_timeout / 3,
            work,
            prepared: Arc::new(OnceCell::new()),
        }
    }
}

#[async_trait]
impl Source for TestPattern {
    fn work(&self) -> Option<&Work> {
        Some(&self.work)
    }

    async fn open(&self, demand: DemandRx) -> Result<Box<dyn Upstream>, SourceError> {
        let (name, size, fps) = (self.name.clone(), self.size, self.fps);
        let prepared = self
            .prepared
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || Arc::new(Prepared::new(&name, size, fps)))
                    .await
                    .map_err(|e| SourceError::Open(format!("test pattern: {e}")))
            })
            .await?
            .clone();
        let mut ticker =
            tokio::time::interval_at(Instant::now(), Duration::from_secs_f64(1.0 / self.fps as f64));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Ok(Box::new(PatternStream {
            prepared,
            ticker,
            frame: 0,
            demand,
            keepalive: self.keepalive,
            last: None,
            work: self.work.clone(),
            turn: self.turn,
        }))
    }
}

struct PatternStream {
    prepared: Arc<Prepared>,
    ticker: tokio::time::Interval,
    frame: u64,
    demand: DemandRx,
    keepalive: Duration,
    /// When the last frame was encoded.
    last: Option<Instant>,
    work: Arc<Work>,
    turn: Op,
}

#[async_trait]
impl Upstream for PatternStream {
    /// Frames tick at the camera's rate; only those the demand wants are drawn and encoded.
    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        loop {
            self.ticker.tick().await;
            self.frame += 1;
            if self.work.raw.wanted() {
                let picture = self.prepared.raw_frame(self.frame - 1, SystemTime::now());
                self.work.raw.publish(picture.turned(self.turn), true);
            }
            let since = self.last.map_or(Duration::MAX, |t| t.elapsed());
            if self.demand.borrow().wants_frame(since, self.keepalive) {
                break;
            }
        }
        self.last = Some(Instant::now());
        self.work.frames_encoded.fetch_add(1, Relaxed);
        let now = SystemTime::now();
        let jpeg = self.prepared.frame(self.frame - 1, now);
        Ok(Captured {
            jpeg,
            width: self.prepared.size.width,
            height: self.prepared.size.height,
            captured_at: now,
            oriented: false,
        })
    }
}

/// Everything that does not change from frame to frame.
struct Prepared {
    name: String,
    size: Size,
    mode: Mode,
    /// The background raw, made when an encoder first asks (1.4 MB at 720p).
    raw_base: std::sync::OnceLock<I420>,
}

enum Mode {
    /// Too small to splice rows: every frame is encoded whole from the background.
    Whole { base: Canvas },
    /// Only the compressed rows are kept (a 720p background would be 2.7 MB of RGB per camera).
    Spliced {
        /// The background's rows under the frame counter and clock.
        text_band: Canvas,
        header: Vec<u8>,
        /// Entropy-coded segment of each MCU row of the background.
        rows: Vec<Vec<u8>>,
        /// First MCU row of the box band.
        box_row: u32,
        /// For each box position, the segments of the box band's rows.
        phases: Vec<Vec<Vec<u8>>>,
    },
}

impl Prepared {
    fn new(name: &str, size: Size, fps: u32) -> Self {
        let base = background(name, size);
        let mcu_rows = size.height.div_ceil(MCU);
        if mcu_rows < 12 {
            return Prepared {
                name: name.to_string(),
                size,
                mode: Mode::Whole { base },
                raw_base: Default::default(),
            };
        }
        let full = base.encode(true);
        let scan = jpeg::split_scan(&full).expect("own encoder output has a scan");
        assert_eq!(scan.segments.len(), mcu_rows as usize, "one segment per MCU row");
        let header = scan.header.to_vec();
        let rows = scan.segments.iter().map(|s| s.to_vec()).collect();
        let box_row = mcu_rows / 2 - BOX_ROWS / 2;
        let band = base.rows(box_row * MCU, BOX_ROWS * MCU);
        let n_phases = (fps * 2).clamp(2, 120);
        let phases = (0..n_phases)
            .map(|k| {
                let mut c = band.clone();
                let (x, bw) = box_position(k, n_phases, size.width);
                c.fill(x, 8, bw, (BOX_ROWS * MCU - 16) as i64, [250, 250, 250]);
                let bytes = c.encode(true);
                let scan = jpeg::split_scan(&bytes).expect("own encoder output has a scan");
                scan.segments.iter().map(|s| s.to_vec()).collect()
            })
            .collect();
        Prepared {
            name: name.to_string(),
            raw_base: Default::default(),
            size,
            mode: Mode::Spliced {
                text_band: base.rows(TEXT_ROWS.start * MCU, TEXT_ROWS.len() as u32 * MCU),
                header,
                rows,
                box_row,
                phases,
            },
        }
    }

    fn frame(&self, n: u64, now: SystemTime) -> Bytes {
        let label = format!("#{n:06}  {}", humantime::format_rfc3339_millis(now));
        match &self.mode {
            Mode::Whole { base } => {
                let mut c = base.clone();
                let scale = fit_scale(c.width, label.len(), 3);
                c.text(8, 4, scale, &label, [255, 255, 0]);
                let phases = 60;
                let (x, bw) = box_position((n % phases) as u32, phases as u32, c.width);
                let y = c.height as i64 / 2;
                c.fill(x, y, bw, 8, [250, 250, 250]);
                Bytes::from(c.encode(false))
            }
            Mode::Spliced {
                text_band,
                header,
                rows,
                box_row,
                phases,
            } => {
                let mut text = text_band.clone();
                let scale = fit_scale(text.width, label.len(), 3);
                text.fill(0, 0, text.width as i64, text.height as i64, [0, 0, 0]);
                text.text(
                    8,
                    (text.height as i64 - 8 * scale as i64) / 2,
                    scale,
                    &label,
                    [255, 255, 0],
                );
                let text_jpeg = text.encode(true);
                let text_scan = jpeg::split_scan(&text_jpeg).expect("own encoder output has a scan");
                let phase = &phases[(n % phases.len() as u64) as usize];
                let segments: Vec<&[u8]> = (0..rows.len() as u32)
                    .map(|r| {
                        if TEXT_ROWS.contains(&r) {
                            text_scan.segments[(r - TEXT_ROWS.start) as usize]
                        } else if (*box_row..box_row + BOX_ROWS).contains(&r) {
                            &phase[(r - box_row) as usize][..]
                        } else {
                            &rows[r as usize][..]
                        }
                    })
                    .collect();
                let mut out = Vec::with_capacity(
                    header.len() + segments.iter().map(|s| s.len() + 2).sum::<usize>() + 2,
                );
                jpeg::join_scan(header, &segments, &mut out);
                Bytes::from(out)
            }
        }
    }
}

impl Prepared {
    /// Frame `n` as a raw picture (limited-range 4:2:0), as [`Self::frame`] draws it.
    fn raw_frame(&self, n: u64, now: SystemTime) -> I420 {
        let size = self.size;
        let base = self
            .raw_base
            .get_or_init(|| I420::from_rgb_limited(&background(&self.name, size).rgb, size));
        let mut p = base.clone();
        let label = format!("#{n:06}  {}", humantime::format_rfc3339_millis(now));
        let (band_y, band_h, (x, bw), box_y, box_h) = match &self.mode {
            Mode::Spliced { box_row, phases, .. } => (
                TEXT_ROWS.start * MCU,
                TEXT_ROWS.len() as u32 * MCU,
                box_position((n % phases.len() as u64) as u32, phases.len() as u32, size.width),
                (box_row * MCU + 8) as i64,
                (BOX_ROWS * MCU - 16) as i64,
            ),
            Mode::Whole { .. } => {
                let scale = fit_scale(size.width, label.len(), 3);
                (
                    0,
                    (8 * scale + 8).min(size.height) & !1,
                    box_position((n % 60) as u32, 60, size.width),
                    size.height as i64 / 2,
                    8,
                )
            }
        };
        // The text band: black, the label in yellow, drawn straight into the planes.
        fill(&mut p, 0, band_y as i64, size.width as i64, band_h as i64, BLACK);
        let scale = fit_scale(size.width, label.len(), 3);
        let top = band_y as i64 + (band_h as i64 - 8 * scale as i64) / 2;
        text_cells(8, top, scale, &label, |x, y, side| {
            fill(&mut p, x, y, side, side, YELLOW)
        });
        fill(&mut p, x, box_y, bw, box_h, WHITE);
        p
    }
}

/// Limited-range BT.601 (Y, U, V) of the pattern's colours.
const BLACK: [u8; 3] = [16, 128, 128];
const WHITE: [u8; 3] = [235, 128, 128];
/// [255, 255, 0].
const YELLOW: [u8; 3] = [210, 16, 146];

/// A rectangle of one colour, clipped to the picture (chroma of the 2x2 blocks it touches).
fn fill(p: &mut I420, x: i64, y: i64, w: i64, h: i64, [cy, cu, cv]: [u8; 3]) {
    let (pw, ph) = (p.size.width as i64, p.size.height as i64);
    let (x0, x1) = (x.clamp(0, pw) as usize, (x + w).clamp(0, pw) as usize);
    let (y0, y1) = (y.clamp(0, ph) as usize, (y + h).clamp(0, ph) as usize);
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let cw = I420::chroma_size(p.size).width as usize;
    for r in y0..y1 {
        p.y[r * pw as usize + x0..r * pw as usize + x1].fill(cy);
    }
    for r in y0 / 2..y1.div_ceil(2) {
        let row = r * cw;
        p.u[row + x0 / 2..row + x1.div_ceil(2)].fill(cu);
        p.v[row + x0 / 2..row + x1.div_ceil(2)].fill(cv);
    }
}

/// A box sliding left to right and back over the cycle.
fn box_position(k: u32, n: u32, width: u32) -> (i64, i64) {
    let bw = (width / 10).max(4) as i64;
    let travel = width as i64 - bw;
    let half = n / 2;
    let t = if k < half { k } else { n - k };
    (travel * t as i64 / half.max(1) as i64, bw)
}

/// Colour bars with the camera name.
fn background(name: &str, size: Size) -> Canvas {
    const BARS: [[u8; 3]; 7] = [
        [192, 192, 192],
        [192, 192, 0],
        [0, 192, 192],
        [0, 192, 0],
        [192, 0, 192],
        [192, 0, 0],
        [0, 0, 192],
    ];
    let mut c = Canvas::new(size.width, size.height, [16, 16, 16]);
    let bar_w = size.width as i64 / BARS.len() as i64 + 1;
    for (i, color) in BARS.iter().enumerate() {
        c.fill(i as i64 * bar_w, 0, bar_w, size.height as i64, *color);
    }
    let y = size.height as i64 * 3 / 4;
    let scale = fit_scale(size.width, name.chars().count() + 2, 4);
    c.fill(0, y - 4, size.width as i64, 8 * scale as i64 + 8, [0, 0, 0]);
    c.text_centered(y, scale, name, [255, 255, 255]);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(jpeg: &[u8]) -> (Vec<u8>, u16, u16) {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let px = d.decode().expect("decodes");
        let info = d.info().unwrap();
        (px, info.width, info.height)
    }

    #[test]
    fn spliced_frames_decode_and_change() {
        for size in [
            Size {
                width: 1280,
                height: 720,
            },
            Size {
                width: 650,
                height: 490,
            },
        ] {
            let p = Prepared::new("Demo", size, 30);
            assert!(matches!(p.mode, Mode::Spliced { .. }));
            let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let a = p.frame(0, t0);
            let b = p.frame(7, t0 + Duration::from_millis(233));
            let (pa, w, h) = decode(&a);
            let (pb, _, _) = decode(&b);
            assert_eq!((w as u32, h as u32), (size.width, size.height));
            assert_eq!(jpeg::dimensions(&a), Some((size.width, size.height)));
            assert_ne!(pa, pb, "the picture moves");
            // The spliced frame equals the same picture encoded whole, up to the box and text:
            // compare a background row far from both.
            let row = (size.height * 7 / 8) as usize * size.width as usize * 3;
            let base = decode(&background("Demo", size).encode(false)).0;
            let diff: u32 = pa[row..row + 300]
                .iter()
                .zip(&base[row..row + 300])
                .map(|(x, y)| x.abs_diff(*y) as u32)
                .sum();
            assert!(diff < 300 * 4, "background rows survive splicing (diff {diff})");
        }
    }

    #[test]
    fn raw_frames_show_the_same_picture_as_the_jpeg_ones() {
        for size in [
            Size {
                width: 1280,
                height: 720,
            },
            Size {
                width: 64,
                height: 48,
            },
        ] {
            let p = Prepared::new("Demo", size, 30);
            let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let raw = p.raw_frame(7, t0);
            assert_eq!(raw.size, size);
            let c = I420::chroma_size(size);
            assert_eq!(raw.u.len(), (c.width * c.height) as usize);
            assert!(raw.y.iter().all(|&v| (16..=235).contains(&v)), "limited range");
            // The JPEG of the same frame, decoded: luma alike away from the text band.
            let jpeg = crate::media::codec::decode_i420(&p.frame(7, t0)).unwrap();
            let w = size.width as usize;
            let row = (size.height as usize * 7 / 8) * w;
            let diff: u32 = (0..w)
                .map(|i| {
                    let full = (raw.y[row + i] as f32 - 16.0) * 255.0 / 219.0;
                    (full - jpeg.y[row + i] as f32).abs() as u32
                })
                .sum();
            assert!(diff < w as u32 * 6, "background alike (diff {diff} over {w} px)");
            assert_ne!(p.raw_frame(8, t0).y, raw.y, "the picture moves");
        }
    }

    #[test]
    fn small_sizes_are_encoded_whole() {
        let p = Prepared::new(
            "x",
            Size {
                width: 64,
                height: 48,
            },
            5,
        );
        assert!(matches!(p.mode, Mode::Whole { .. }));
        let (_, w, h) = decode(&p.frame(3, SystemTime::now()));
        assert_eq!((w, h), (64, 48));
    }
}
