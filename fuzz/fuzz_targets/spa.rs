//! fwknop's SPA datagrams (`doors::spa::verify`) on any bytes, in two ways chosen by the first
//! byte: the bytes as a datagram (length, alphabet, HMAC: nothing past the HMAC without the
//! key), or the bytes as the message fields, sealed with the door's keys as a client would
//! (`seal`), so that decryption and every field parser see them.
//!
//! Invariants checked beyond "no panic": a sealed message that verifies is an access request
//! whose fields, encoded again by `encode`, verify to the same request; a raw datagram that
//! verifies is one of the seeds' real fwknop packets (it cannot be forged without the keys).
#![no_main]

use knockgate::doors::spa::{encode, seal, verify, Keys, Message};
use libfuzzer_sys::fuzz_target;

/// The keys of the seeds (fuzz/corpus/spa/seed-*): `fwknop --key-gen` output.
const K: &str = "eKHmC2Ow2JTqzXLy7sjYBRFfCmrQwbTAx2uiznipAug=";
const H: &str =
    "VNrfU/1Pichlo/Kg61u8pMHCMoLk4PyQfVACF6UxTYG/bpN3D5/ciou6JoJngnTQ+AHRIbBpyeKMyXTpsWAujg==";
/// Any time: the age check is checked with a window that takes every timestamp.
const NOW: u64 = 1_796_029_673;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = Keys::from_base64(K, H).expect("valid keys");
    if mode % 2 == 0 {
        // A raw datagram: only the seeds' real packets (and these with a trailing newline)
        // carry a valid HMAC.
        if let Ok(r) = verify(rest, &keys, NOW, u64::MAX / 2) {
            assert_eq!(r.user, "root", "a forged datagram verified");
        }
        return;
    }
    let Ok(fields) = std::str::from_utf8(rest) else {
        return;
    };
    let sealed = seal(fields, &keys, *b"fuzzsalt");
    let Ok(r) = verify(sealed.as_bytes(), &keys, NOW, u64::MAX / 2) else {
        return;
    };
    let again = encode(
        &Message {
            random: 1234567890123456,
            user: &r.user,
            timestamp: r.timestamp,
            addr: r.addr,
            access: &r.access,
            client_timeout: r.client_timeout,
        },
        &keys,
        *b"fuzzsalt",
    );
    // Re-encoding can only be longer than the limit if the original was near it.
    if let Ok(r2) = verify(again.as_bytes(), &keys, NOW, u64::MAX / 2) {
        assert_eq!(
            (
                &r2.addr,
                &r2.access,
                &r2.user,
                r2.timestamp,
                r2.client_timeout
            ),
            (&r.addr, &r.access, &r.user, r.timestamp, r.client_timeout)
        );
    }
});
