//! `[[light]]` blocks: a light switched over a serial port while a camera's pump runs.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::Validator;
use super::values::valid_id;

pub const DEFAULT_BAUD: u32 = 9600;
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(500);
pub const DEFAULT_OFF_DELAY: Duration = Duration::from_secs(10);
pub const DEFAULT_GCODE_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_GCODE_ON: &str = "M355 S1 P255";
pub const DEFAULT_GCODE_OFF: &str = "M355 S0";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// LCUS-1/2/4/8 USB relay boards (CH340, 9600 8N1): `A0 <channel> 01|00 <sum>`.
    Lcus { channel: u8 },
    /// A printer's case light by G-code: a line each, answered by `ok`.
    Gcode {
        on: String,
        off: String,
        timeout: Duration,
    },
    /// Raw bytes.
    Raw { on: Vec<u8>, off: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LightConfig {
    pub id: String,
    pub port: PathBuf,
    pub baud: u32,
    pub protocol: Protocol,
    /// After switching on, frames this young are not used for snapshots.
    pub settle: Duration,
    /// The light goes off this long after the last camera using it stopped.
    pub off_delay: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLight {
    id: Spanned<String>,
    port: Spanned<String>,
    baud: Option<Spanned<i64>>,
    protocol: Spanned<String>,
    channel: Option<Spanned<i64>>,
    on: Option<Spanned<String>>,
    off: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    settle: Option<Spanned<String>>,
    off_delay: Option<Spanned<String>>,
}

impl Validator<'_> {
    pub(super) fn lights(&mut self, raw: &[RawLight]) -> Vec<LightConfig> {
        let mut out: Vec<LightConfig> = Vec::new();
        for (i, l) in raw.iter().enumerate() {
            let at = |k: &str| format!("light[{i}].{k}");
            let before = self.problems.len();
            let id = l.id.get_ref().clone();
            if !valid_id(&id) {
                self.problem(
                    Some(l.id.span()),
                    &at("id"),
                    &format!("{id:?} is not a valid id: use lowercase letters, digits, '-' and '_' (e.g. \"enclosure-1\")"),
                );
            } else if out.iter().any(|o| o.id == id) {
                self.problem(
                    Some(l.id.span()),
                    &at("id"),
                    &format!("{id:?} is used by another light"),
                );
            }
            if l.port.get_ref().trim().is_empty() {
                self.problem(
                    Some(l.port.span()),
                    &at("port"),
                    "is empty; give the serial device, e.g. \"/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0\"",
                );
            }
            let baud = self
                .int(
                    &l.baud,
                    &at("baud"),
                    50..=4_000_000,
                    "must be a baud rate such as 9600 or 115200",
                )
                .unwrap_or(DEFAULT_BAUD);
            let wrong_key = |v: &mut Validator, s: &Option<Spanned<String>>, key: &str, why: &str| {
                if let Some(s) = s {
                    v.problem(Some(s.span()), &at(key), why);
                }
            };
            let protocol = match l.protocol.get_ref().as_str() {
                "lcus" => {
                    wrong_key(
                        self,
                        &l.on,
                        "on",
                        "lcus boards have fixed commands; remove on/off (use protocol = \"raw\" for others)",
                    );
                    wrong_key(
                        self,
                        &l.off,
                        "off",
                        "lcus boards have fixed commands; remove on/off",
                    );
                    wrong_key(
                        self,
                        &l.timeout,
                        "timeout",
                        "only applies to protocol = \"gcode\"",
                    );
                    let channel = match &l.channel {
                        Some(_) => self
                            .int(
                                &l.channel,
                                &at("channel"),
                                1..=8,
                                "must be 1 to 8 (the relay number on the board)",
                            )
                            .unwrap_or(1),
                        None => {
                            self.problem(
                                Some(l.protocol.span()),
                                &at("channel"),
                                "lcus needs channel = 1 to 8",
                            );
                            1
                        }
                    };
                    Protocol::Lcus { channel }
                }
                "gcode" => {
                    if let Some(c) = &l.channel {
                        self.problem(
                            Some(c.span()),
                            &at("channel"),
                            "only applies to protocol = \"lcus\"",
                        );
                    }
                    let line =
                        |v: &mut Validator, s: &Option<Spanned<String>>, key: &str, default: &str| match s {
                            None => default.to_string(),
                            Some(s)
                                if s.get_ref().trim().is_empty() || s.get_ref().contains(['\n', '\r']) =>
                            {
                                v.problem(
                                    Some(s.span()),
                                    &at(key),
                                    "must be one G-code line, e.g. \"M355 S1 P255\"",
                                );
                                String::new()
                            }
                            Some(s) => s.get_ref().trim().to_string(),
                        };
                    let on = line(self, &l.on, "on", DEFAULT_GCODE_ON);
                    let off = line(self, &l.off, "off", DEFAULT_GCODE_OFF);
                    let timeout = self.duration(&l.timeout, &at("timeout"), DEFAULT_GCODE_TIMEOUT);
                    Protocol::Gcode { on, off, timeout }
                }
                "raw" => {
                    if let Some(c) = &l.channel {
                        self.problem(
                            Some(c.span()),
                            &at("channel"),
                            "only applies to protocol = \"lcus\"",
                        );
                    }
                    wrong_key(
                        self,
                        &l.timeout,
                        "timeout",
                        "only applies to protocol = \"gcode\"",
                    );
                    let bytes = |v: &mut Validator, s: &Option<Spanned<String>>, key: &str| match s {
                        None => {
                            v.problem(
                                Some(l.protocol.span()),
                                &at(key),
                                "raw needs on and off as hex bytes, e.g. \"A0 01 01 A2\"",
                            );
                            Vec::new()
                        }
                        Some(s) => parse_hex(s.get_ref()).unwrap_or_else(|msg| {
                            v.problem(Some(s.span()), &at(key), &msg);
                            Vec::new()
                        }),
                    };
                    let on = bytes(self, &l.on, "on");
                    let off = bytes(self, &l.off, "off");
                    Protocol::Raw { on, off }
                }
                other => {
                    self.problem(
                        Some(l.protocol.span()),
                        &at("protocol"),
                        &format!("{other:?} is not a light protocol; use \"lcus\" (USB relay board), \"gcode\" (printer case light) or \"raw\""),
                    );
                    Protocol::Raw {
                        on: Vec::new(),
                        off: Vec::new(),
                    }
                }
            };
            let settle = self.duration(&l.settle, &at("settle"), DEFAULT_SETTLE);
            let off_delay = self.duration(&l.off_delay, &at("off_delay"), DEFAULT_OFF_DELAY);
            if self.problems.len() == before {
                out.push(LightConfig {
                    id,
                    port: PathBuf::from(l.port.get_ref().trim()),
                    baud,
                    protocol,
                    settle,
                    off_delay,
                });
            }
        }
        out
    }
}

/// "A0 01 01 A2", "a00101a2", "0xA0,0x01" → bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("{s:?} is not hex bytes; write e.g. \"A0 01 01 A2\"");
    let cleaned: String = s
        .split([' ', ',', ':'])
        .map(|w| w.trim().trim_start_matches("0x").trim_start_matches("0X"))
        .collect();
    if cleaned.is_empty() || cleaned.len() % 2 != 0 {
        return Err(bad());
    }
    (0..cleaned.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cleaned.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn hex() {
        assert_eq!(parse_hex("A0 01 01 A2").unwrap(), vec![0xa0, 1, 1, 0xa2]);
        assert_eq!(parse_hex("0xA0,0x01").unwrap(), vec![0xa0, 1]);
        assert!(parse_hex("A0 1").is_err() && parse_hex("zz").is_err() && parse_hex("").is_err());
    }

    #[test]
    fn lights_and_cameras() {
        let c = super::super::parse(
            "[[light]]\nid = \"relay\"\nport = \"/dev/ttyUSB0\"\nprotocol = \"lcus\"\nchannel = 2\n\
             [[light]]\nid = \"case\"\nport = \"/dev/ttyACM0\"\nbaud = 115200\nprotocol = \"gcode\"\noff_delay = \"1m\"\n\
             [[camera]]\nid = \"a\"\nsource = \"test:\"\nlight = \"relay\"\n",
            Path::new("f.toml"),
        )
        .unwrap();
        assert_eq!(c.lights.len(), 2);
        assert_eq!(c.lights[0].protocol, Protocol::Lcus { channel: 2 });
        assert_eq!((c.lights[0].baud, c.lights[0].settle), (9600, DEFAULT_SETTLE));
        assert_eq!(
            c.lights[1].protocol,
            Protocol::Gcode {
                on: DEFAULT_GCODE_ON.into(),
                off: DEFAULT_GCODE_OFF.into(),
                timeout: DEFAULT_GCODE_TIMEOUT
            }
        );
        assert_eq!(c.lights[1].off_delay, Duration::from_secs(60));
        assert_eq!(c.cameras[0].light.as_deref(), Some("relay"));

        let e = super::super::parse(
            "[[light]]\nid = \"r\"\nport = \"/dev/x\"\nprotocol = \"lcus\"\nchannel = 9\n\
             [[light]]\nid = \"q\"\nport = \"/dev/y\"\nprotocol = \"morse\"\n\
             [[camera]]\nid = \"a\"\nsource = \"test:\"\nlight = \"nope\"\n",
            Path::new("f.toml"),
        )
        .unwrap_err()
        .lines();
        for key in ["light[0].channel", "light[1].protocol", "camera[0].light"] {
            assert!(
                e.iter().any(|l| l.contains(&format!(": {key}: "))),
                "missing {key}: {e:#?}"
            );
        }
    }
}
