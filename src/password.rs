//! Password hashes for `[http.auth]` users: PBKDF2-HMAC-SHA256 (ring), written
//! `pbkdf2-sha256$ITERATIONS$SALT$HASH` (salt and hash in base64), made by `farmcam hash-password`.
//! And, for RTSP clients that speak only Digest (RFC 2617), a user's `MD5(name:realm:password)`.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

/// Iterations `farmcam hash-password` uses: about 40 ms here and a quarter second on a Pi 4,
/// paid once per client (verified credentials are remembered, see `http::auth`).
pub const ITERATIONS: u32 = 100_000;
const PREFIX: &str = "pbkdf2-sha256";
/// The realm of every challenge (Basic and Digest).
pub const REALM: &str = "farmcam";

/// Lowercase hex MD5 of `s` (Digest's hash).
pub fn md5_hex(s: &str) -> String {
    use md5::Digest;
    md5::Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Digest's HA1 for a user: what `rtsp_digest` holds.
pub fn digest_ha1(name: &str, password: &str) -> String {
    md5_hex(&format!("{name}:{REALM}:{password}"))
}

#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// Never shows the hash (it could be attacked offline).
impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordHash(pbkdf2-sha256, {} iterations)", self.iterations)
    }
}

impl PasswordHash {
    /// A fresh hash of `password` with a random salt.
    pub fn new(password: &str) -> PasswordHash {
        let mut salt = vec![0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .expect("the system's random source works");
        let iterations = NonZeroU32::new(ITERATIONS).expect("non-zero");
        let mut hash = vec![0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        PasswordHash {
            iterations,
            salt,
            hash,
        }
    }

    /// A hash that no password matches, checked at the cost of `iterations` (default
    /// [`ITERATIONS`]): for names that are no user's, so that they cost a real check.
    pub fn decoy(iterations: Option<NonZeroU32>) -> PasswordHash {
        let mut bytes = vec![0u8; 48];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random source works");
        let hash = bytes.split_off(16);
        PasswordHash {
            iterations: iterations.unwrap_or(NonZeroU32::new(ITERATIONS).expect("non-zero")),
            salt: bytes,
            hash,
        }
    }

    pub fn iterations(&self) -> NonZeroU32 {
        self.iterations
    }

    /// Parse `pbkdf2-sha256$ITERATIONS$SALT$HASH`; the error says what is wrong and how to make one.
    pub fn parse(s: &str) -> Result<PasswordHash, String> {
        let bad = |why: &str| {
            format!("{why}; make one with `farmcam hash-password` (it reads the password on standard input)")
        };
        let parts: Vec<&str> = s.trim().split('$').collect();
        let [prefix, iterations, salt, hash] = parts[..] else {
            return Err(bad("not a password hash (pbkdf2-sha256$ITERATIONS$SALT$HASH)"));
        };
        if prefix != PREFIX {
            return Err(bad("not a pbkdf2-sha256 password hash"));
        }
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|n| (1000..=10_000_000).contains(n))
            .and_then(NonZeroU32::new)
            .ok_or_else(|| bad("the iteration count must be between 1000 and 10000000"))?;
        let salt = B64
            .decode(salt)
            .ok()
            .filter(|s| s.len() >= 8)
            .ok_or_else(|| bad("the salt is not base64 of at least 8 bytes"))?;
        let hash = B64
            .decode(hash)
            .ok()
            .filter(|h| h.len() == 32)
            .ok_or_else(|| bad("the hash is not base64 of 32 bytes"))?;
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` matches (in constant time; slow on purpose).
    pub fn verify(&self, password: &str) -> bool {
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            password.as_bytes(),
            &self.hash,
        )
        .is_ok()
    }

    /// [`PasswordHash::verify`] at the cost of at least `iterations`: a user whose hash has
    /// fewer pays the difference, so that an answer's time tells nothing of whose name it was.
    pub fn verify_at_least(&self, password: &str, iterations: NonZeroU32) -> bool {
        let ok = self.verify(password);
        if let Some(more) = iterations
            .get()
            .checked_sub(self.iterations.get())
            .and_then(NonZeroU32::new)
        {
            let mut sink = [0u8; 32];
            pbkdf2::derive(
                pbkdf2::PBKDF2_HMAC_SHA256,
                more,
                &self.salt,
                password.as_bytes(),
                &mut sink,
            );
            std::hint::black_box(sink);
        }
        ok
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}${}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.hash)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ha1_is_rfc_2617s() {
        // RFC 2617 §3.5: Mufasa, "Circle Of Life", realm testrealm@host.com.
        assert_eq!(
            md5_hex("Mufasa:testrealm@host.com:Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
        assert_eq!(digest_ha1("farm", "pw"), md5_hex("farm:farmcam:pw"));
    }

    #[test]
    fn a_hash_round_trips_and_verifies_only_its_password() {
        let h = PasswordHash::new("c0rrect horse#");
        let text = h.to_string();
        assert!(text.starts_with("pbkdf2-sha256$100000$"));
        let back = PasswordHash::parse(&text).unwrap();
        assert!(back.verify("c0rrect horse#"));
        assert!(!back.verify("c0rrect horse"));
        assert!(!format!("{back:?}").contains(&text[30..]));
    }

    /// This thread's CPU time: what a check costs, whatever else the machine does.
    fn thread_cpu() -> std::time::Duration {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: fills the struct passed.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    /// A hash of `password` at `iterations`.
    fn at(password: &str, iterations: u32) -> PasswordHash {
        let mut h = PasswordHash::new(password);
        h.iterations = NonZeroU32::new(iterations).unwrap();
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            h.iterations,
            &h.salt,
            password.as_bytes(),
            &mut h.hash,
        );
        h
    }

    #[test]
    fn a_user_with_fewer_iterations_costs_what_the_largest_count_costs() {
        let few = at("pw", 2_000);
        let many = at("pw", 40_000);
        let floor = many.iterations();
        assert!(few.verify_at_least("pw", floor) && !few.verify_at_least("nope", floor));
        // CPU time, not wall time: a loaded machine slows both alike. Unpadded, the cheap hash
        // costs a twentieth of the dear one.
        let t0 = thread_cpu();
        few.verify_at_least("wrong", floor);
        let padded = thread_cpu() - t0;
        let t1 = thread_cpu();
        many.verify("wrong");
        let full = thread_cpu() - t1;
        assert!(
            padded.as_secs_f64() >= full.as_secs_f64() * 0.5,
            "{padded:?} for the padded check, {full:?} for the full one"
        );
    }

    #[test]
    fn malformed_hashes_say_how_to_make_one() {
        for bad in [
            "",
            "hunter2",
            "pbkdf2-sha256$10$c2FsdHNhbHQ$x",
            "bcrypt$1$2$3",
            "pbkdf2-sha256$100000$!!$AAAA",
        ] {
            let e = PasswordHash::parse(bad).unwrap_err();
            assert!(e.contains("farmcam hash-password"), "{bad}: {e}");
            assert!(!e.contains("hunter2"));
        }
    }
}
