//! Sizes on request (`?width=`, `?height=`) and cameras mounted turned (`rotate`, `flip`): the
//! decoded results, what is shared, and what is refused.

mod common;

use common::mjpeg_server::MjpegServer;
use common::{config, get, open_stream, Daemon, Stream};

/// Decode to RGB: (pixels, width, height).
fn rgb(jpeg: &[u8]) -> (Vec<u8>, usize, usize) {
    let mut d = jpeg_decoder::Decoder::new(jpeg);
    let px = d.decode().expect("a valid JPEG");
    let info = d.info().unwrap();
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
    (px, info.width as usize, info.height as usize)
}

fn size(jpeg: &[u8]) -> (usize, usize) {
    let (_, w, h) = rgb(jpeg);
    (w, h)
}

async fn snapshot(d: &Daemon, path: &str) -> (u16, Vec<u8>) {
    let r = get(d.main, path).await;
    (r.status, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_on_request_are_made_once_per_frame_and_bounded() {
    let d = Daemon::start(&config(
        "",
        "[[camera]]\nid = \"cam\"\nsource = \"test:\"\nsize = \"1280x720\"\nfps = 10\n",
    ));
    // Widths give those widths with the aspect ratio; heights likewise; larger: the frame itself.
    for (query, want) in [
        ("width=320", (320, 180)),
        ("height=90", (156, 88)),
        ("width=4000", (1280, 720)),
        ("", (1280, 720)),
    ] {
        let (status, body) = snapshot(&d, &format!("/cameras/cam/snapshot?{query}")).await;
        assert_eq!(status, 200, "{query}: {}", String::from_utf8_lossy(&body));
        assert!(
            body.starts_with(b"\xff\xd8"),
            "{query}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        assert_eq!(size(&body), want, "{query}");
    }
    // mjpg-streamer's form takes it too.
    let (status, body) = snapshot(&d, "/cameras/cam/?action=snapshot&width=480").await;
    assert_eq!((status, size(&body)), (200, (480, 270)));

    // Ten viewers at one width and ten at another: two scaled frames per source frame.
    let mut viewers = Vec::new();
    for i in 0..20 {
        let w = if i % 2 == 0 { 320 } else { 480 };
        let s = Stream::open(
            d.main,
            &format!("GET /cameras/cam/stream?width={w} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await;
        assert_eq!(s.status, 200);
        viewers.push((w, s));
    }
    let before = d.camera("cam").await;
    for _ in 0..10 {
        for (w, s) in viewers.iter_mut() {
            let p = s.next_part().await.expect("stream open");
            assert_eq!(size(&p.jpeg).0, *w as usize);
        }
    }
    let after = d.camera("cam").await;
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    let captured = n(&after, "frames_captured") - n(&before, "frames_captured");
    let scaled = n(&after, "frames_scaled") - n(&before, "frames_scaled");
    // Every viewer read ten frames, each at its size: at least ten frames made per size. One
    // per size and source frame (and the frames already waiting when the count started) —
    // never one per viewer, which would be ten times as many.
    assert!(scaled >= 20, "{scaled} scaled frames");
    assert!(
        scaled <= 2 * (captured + 9),
        "{scaled} scaled frames for {captured} source frames at 2 sizes"
    );
    let sizes = after["sizes"].as_array().unwrap();
    assert!(
        sizes.contains(&"width=320".into()) && sizes.contains(&"width=480".into()),
        "{after}"
    );

    // Bad values are refused with the allowed range; a fifth size with the ones in use.
    for bad in [
        "width=0",
        "width=abc",
        "width=10",
        "height=-1",
        "width=320&height=100",
    ] {
        let r = get(d.main, &format!("/cameras/cam/snapshot?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        let msg = String::from_utf8_lossy(&r.body);
        assert!(
            msg.contains("from 48 to 7680") || msg.contains("not both"),
            "{bad}: {msg}"
        );
    }
    // Sides are rounded to whole blocks of 8: 100 to 103 are one size.
    for w in 100..=103 {
        let (status, body) = snapshot(&d, &format!("/cameras/cam/snapshot?width={w}")).await;
        assert_eq!((status, size(&body)), (200, (104, 59)), "width={w}");
    }
    // One client asking odd widths cannot keep others from theirs: the size nobody holds that
    // was used longest ago makes room (before, width 320 for the wall answered 400 here).
    for w in [150, 200, 250, 600] {
        let (status, _) = snapshot(&d, &format!("/cameras/cam/snapshot?width={w}")).await;
        assert_eq!(status, 200, "width={w}");
    }
    let (status, body) = snapshot(&d, "/cameras/cam/snapshot?width=640").await;
    assert_eq!((status, size(&body)), (200, (640, 360)));
    // Four sizes streamed at once are all held: a fifth is refused, naming them.
    let mut more = Vec::new();
    for w in [640, 800] {
        let s = Stream::open(
            d.main,
            &format!("GET /cameras/cam/stream?width={w} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await;
        assert_eq!(s.status, 200);
        more.push(s);
    }
    let r = get(d.main, "/cameras/cam/snapshot?width=960").await;
    assert_eq!(r.status, 400);
    let msg = String::from_utf8_lossy(&r.body);
    assert!(
        msg.contains("at most 4 sizes") && msg.contains("width=320") && msg.contains("width=800"),
        "{msg}"
    );
    drop(more);
    // A size in use is still served.
    let (status, body) = snapshot(&d, "/cameras/cam/snapshot?width=480").await;
    assert_eq!((status, size(&body)), (200, (480, 270)));
    let metrics = String::from_utf8(get(d.main, "/metrics").await.body).unwrap();
    assert!(
        metrics.contains("farmcam_frames_scaled_total{camera=\"cam\"}"),
        "{metrics}"
    );
}

/// Where a pixel of a `w`x`h` picture lands after turning `rotate` degrees clockwise, then
/// flipping; and the turned size. Written out step by step, independently of farmcam's table.
fn lands(x: usize, y: usize, w: usize, h: usize, rotate: u32, flip: &str) -> (usize, usize, usize, usize) {
    let (mut x, mut y, mut w, mut h) = (x, y, w, h);
    for _ in 0..rotate / 90 {
        // One quarter turn clockwise.
        (x, y, w, h) = (h - 1 - y, x, h, w);
    }
    match flip {
        "horizontal" => x = w - 1 - x,
        "vertical" => y = h - 1 - y,
        _ => {}
    }
    (x, y, w, h)
}

fn pixel(px: &[u8], w: usize, x: usize, y: usize) -> [u8; 3] {
    let i = (y * w + x) * 3;
    [px[i], px[i + 1], px[i + 2]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turned_cameras_put_the_pattern_where_expected() {
    // Every rotation and flip. 640x352 is whole JPEG blocks (turned losslessly); 640x360 is not
    // (1080p-like: decoded, turned and encoded again), for the quarter turns.
    let mut cams = String::new();
    let mut cases = Vec::new();
    for rotate in [0, 90, 180, 270] {
        for flip in ["none", "horizontal", "vertical"] {
            let id = format!("r{rotate}-{flip}");
            cams.push_str(&format!(
                "[[camera]]\nid = \"{id}\"\nsource = \"test:\"\nsize = \"640x352\"\nfps = 5\nrotate = {rotate}\nflip = \"{flip}\"\n"
            ));
            cases.push((id, rotate, flip, (640, 352)));
        }
    }
    cams.push_str("[[camera]]\nid = \"odd\"\nsource = \"test:\"\nsize = \"640x360\"\nfps = 5\nrotate = 90\n");
    cases.push(("odd".into(), 90, "none", (640, 360)));
    let d = Daemon::start(&config("", &cams));

    for (id, rotate, flip, (w, h)) in cases {
        // /api/cameras shows the turned size before any frame.
        let status = d.camera(&id).await;
        let (_, _, tw, th) = lands(0, 0, w, h, rotate, flip);
        assert_eq!(status["size"], format!("{tw}x{th}"), "{id}: {status}");
        assert_eq!(status["rotate"], rotate, "{id}");

        let (code, body) = snapshot(&d, &format!("/cameras/{id}/snapshot")).await;
        assert_eq!(code, 200, "{id}");
        let (px, ow, oh) = rgb(&body);
        assert_eq!((ow, oh), (tw, th), "{id}: turned size");
        // Markers of the pattern (in the unturned picture): the blue bar on the right edge, the
        // grey bar on the left, the black band of the clock near the top.
        let blue = |p: [u8; 3]| p[2] > 150 && p[0] < 70 && p[1] < 70;
        let grey = |p: [u8; 3]| p.iter().all(|c| (150..235).contains(c));
        let black = |p: [u8; 3]| p.iter().all(|c| *c < 45);
        for (what, (x, y), is) in [
            ("blue bar", (w - 12, 236), &blue as &dyn Fn([u8; 3]) -> bool),
            ("grey bar", (12, 236), &grey),
            ("clock band", (w - 40, 32), &black),
        ] {
            let (lx, ly, _, _) = lands(x, y, w, h, rotate, flip);
            let p = pixel(&px, ow, lx, ly);
            assert!(
                is(p),
                "{id}: the {what} at ({x},{y}) should be at ({lx},{ly}), which is {p:?}"
            );
        }
        // Sizes are taken of the turned picture.
        let (code, body) = snapshot(&d, &format!("/cameras/{id}/snapshot?width=160")).await;
        assert_eq!(code, 200);
        assert_eq!(size(&body), (160, (160 * th + tw / 2) / tw), "{id}");
    }
    assert!(
        d.log_text().contains("cannot be turned losslessly"),
        "the recoded camera says why it costs CPU"
    );
}

/// The JPEG's quantisation tables (DQT segments), which an encode would replace.
fn dqt(jpeg: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xff && jpeg[i + 1] != 0xda {
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if jpeg[i + 1] == 0xdb {
            out.push(jpeg[i..i + 2 + len].to_vec());
        }
        i += 2 + len;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passed_through_mjpeg_is_turned_losslessly() {
    let http = MjpegServer::start(320, 240).await;
    let d = Daemon::start(&config(
        "",
        &format!(
            "[[camera]]\nid = \"cam\"\nsource = \"{}\"\nrotate = 270\n[[camera]]\nid = \"plain\"\nsource = \"{}\"\n",
            http.url(),
            http.url()
        ),
    ));
    let mut turned = open_stream(&d, "cam").await;
    let mut plain = open_stream(&d, "plain").await;
    let t = common::live_frame(&mut turned).await;
    let p = common::live_frame(&mut plain).await;
    // Not re-encoded: the camera's own quantisation tables (a quarter turn transposes them,
    // along with the coefficients: the same values in another order).
    let sorted = |tables: Vec<Vec<u8>>| {
        tables
            .into_iter()
            .map(|mut t| {
                t.sort_unstable();
                t
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(sorted(dqt(&t.jpeg)), sorted(dqt(&p.jpeg)));
    assert!(!dqt(&t.jpeg).is_empty());
    // The picture is the camera's, turned: match frames by their colour (each of the camera's
    // ten frames has its own green), then compare every pixel.
    let green = |px: &[u8], w: usize| pixel(px, w, 100, 100)[1];
    let (tp, tw, th) = rgb(&t.jpeg);
    assert_eq!((tw, th), (240, 320));
    let want = green(&tp, tw);
    let mut reference = None;
    for _ in 0..40 {
        let q = common::live_frame(&mut plain).await;
        let (pp, pw, _) = rgb(&q.jpeg);
        if green(&pp, pw).abs_diff(want) <= 2 {
            reference = Some(pp);
            break;
        }
    }
    let pp = reference.expect("the same picture comes round on the plain camera");
    let (mut total, mut worst) = (0u64, 0u8);
    for y in 0..240 {
        for x in 0..320 {
            let (lx, ly, _, _) = lands(x, y, 320, 240, 270, "none");
            let a = pixel(&pp, 320, x, y);
            let b = pixel(&tp, tw, lx, ly);
            for c in 0..3 {
                let diff = a[c].abs_diff(b[c]);
                total += diff as u64;
                worst = worst.max(diff);
            }
        }
    }
    let mean = total as f64 / (320.0 * 240.0 * 3.0);
    assert!(
        mean < 1.0 && worst < 64,
        "mean difference {mean:.2}, worst {worst}"
    );
    drop(http);
}
