//! What a V4L2 camera's buffers become: MJPEG frames completed (padding cut, Huffman tables added
//! when missing) and YUYV frames encoded. Checked by decoding the results with another decoder.
//! (The same paths against real V4L2 drivers: tests/v4l2.rs.)

mod common;

use farmcam::frame::Size;
use farmcam::media::jpeg::{complete_mjpeg, MjpegError, STANDARD_DHT};
use farmcam::media::orientation::Op;
use farmcam::source::v4l2::yuyv::Yuyv;

use common::{dht_segments, strip_dht};

/// A camera-like baseline JPEG with the standard tables (libjpeg-turbo's default).
fn camera_jpeg(w: u16, h: u16) -> Vec<u8> {
    let rgb: Vec<u8> = (0..w as usize * h as usize)
        .flat_map(|i| {
            let (x, y) = (i % w as usize, i / w as usize);
            [
                (x * 255 / w as usize) as u8,
                (y * 255 / h as usize) as u8,
                ((x ^ y) % 256) as u8,
            ]
        })
        .collect();
    let size = Size {
        width: w as u32,
        height: h as u32,
    };
    farmcam::media::codec::encode_rgb(&rgb, size, 80, false).unwrap()
}

fn pixels(jpeg: &[u8]) -> Vec<u8> {
    jpeg_decoder::Decoder::new(jpeg).decode().expect("a valid JPEG")
}

#[test]
fn frames_without_huffman_tables_get_the_standard_ones_and_lose_their_padding() {
    let original = camera_jpeg(320, 240);
    assert_eq!(
        dht_segments(&original).len(),
        4,
        "libjpeg-turbo writes one DHT per table"
    );
    let bare = strip_dht(&original);
    assert!(
        jpeg_decoder::Decoder::new(&bare[..]).decode().is_err(),
        "undecodable without tables"
    );
    // As the driver hands it over: the image, then the rest of the buffer.
    let mut buffer = bare.clone();
    buffer.resize(bare.len() + 4096, 0);

    let (done, dims) = complete_mjpeg(&buffer).unwrap();
    assert_eq!(dims, (320, 240));
    assert_eq!(done.len(), bare.len() + STANDARD_DHT.len());
    assert_eq!(dht_segments(&done).len(), 1);
    assert_eq!(strip_dht(&done), bare, "the camera's bytes are untouched");
    assert_eq!(
        pixels(&done),
        pixels(&original),
        "decodes exactly as the original"
    );
}

#[test]
fn complete_frames_are_only_trimmed() {
    let original = camera_jpeg(64, 48);
    let mut buffer = original.clone();
    buffer.extend_from_slice(&[0u8; 100]);
    let (done, dims) = complete_mjpeg(&buffer).unwrap();
    assert_eq!(dims, (64, 48));
    assert_eq!(&done[..], &original[..]);
    assert!(
        matches!(done, std::borrow::Cow::Borrowed(_)),
        "no copy when nothing is added"
    );
}

#[test]
fn broken_frames_are_refused() {
    let original = camera_jpeg(64, 48);
    assert_eq!(
        complete_mjpeg(&original[..original.len() - 2]).unwrap_err(),
        MjpegError::Truncated
    );
    assert_eq!(complete_mjpeg(&original[..40]).unwrap_err(), MjpegError::Header);
    assert_eq!(complete_mjpeg(&[0u8; 4096]).unwrap_err(), MjpegError::Header);
    assert_eq!(complete_mjpeg(&[]).unwrap_err(), MjpegError::Header);
}

/// YUYV colours (BT.601, as webcams send them) come out as the same colours.
#[test]
fn yuyv_frames_encode_to_the_colours_the_camera_saw() {
    let (w, h) = (64u32, 32u32);
    let stride = w * 2 + 16; // drivers may pad lines
                             // Left half red (Y 81, U 90, V 240), right half blue (Y 41, U 240, V 110).
    let mut data = vec![0u8; (stride * h) as usize];
    for y in 0..h as usize {
        for pair in 0..(w / 2) as usize {
            let px = if pair < (w / 4) as usize {
                [81, 90, 81, 240]
            } else {
                [41, 240, 41, 110]
            };
            let at = y * stride as usize + pair * 4;
            data[at..at + 4].copy_from_slice(&px);
        }
    }
    let frame = Yuyv {
        data: &data,
        width: w,
        height: h,
        stride,
    };
    assert!(frame.is_complete());
    let jpeg = frame.encode(90, Op::None).unwrap();
    let mut d = jpeg_decoder::Decoder::new(&jpeg[..]);
    let rgb = d.decode().unwrap();
    assert_eq!((d.info().unwrap().width, d.info().unwrap().height), (64, 32));
    let at = |x: usize, y: usize| &rgb[(y * w as usize + x) * 3..][..3];
    let near = |got: &[u8], want: [u8; 3]| got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 24);
    assert!(near(at(8, 16), [255, 0, 0]), "left is red: {:?}", at(8, 16));
    assert!(near(at(56, 16), [0, 0, 255]), "right is blue: {:?}", at(56, 16));

    let short = Yuyv {
        data: &data[..data.len() - stride as usize],
        ..frame
    };
    assert!(!short.is_complete(), "a short buffer is refused, not read past");
}
