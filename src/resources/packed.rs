//! Tables kept gzipped in a ConfigMap's `binaryData` (keys ending in `.gz`). One object holds
//! at most 1 MiB: the gateway's transport map has a line per served domain (about 150 bytes
//! with its journal line), so as text it stops fitting at about 7,000 domains, and a
//! standby's recipient map (a line per covered address) at about 19,000 addresses; lists of
//! addresses and Postfix tables compress five- to tenfold.
//! The output is deterministic (no name, no timestamp, one level), so an unchanged table packs
//! to the same bytes and an unchanged ConfigMap is never written again. `flate2` does the
//! compression; Postfix hosts read the tables with `gzip -dc`.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;

/// The largest table [`unpack`] accepts: our tables pack five- to twentyfold, so a full 1 MiB
/// object holds at most about 20 MiB of them; deflate reaches 1,000-fold, so without a bound a
/// hand-edited ConfigMap in a tenant's namespace (a "gzip bomb") could make the operator
/// allocate a gigabyte per read.
const MAX_UNPACKED: u64 = 48 * 1024 * 1024;

/// `text`, gzipped.
pub fn pack(text: &str) -> ByteString {
    let mut encoder = GzEncoder::new(Vec::with_capacity(text.len() / 8 + 64), Compression::default());
    // Writing into a Vec cannot fail.
    let packed = encoder
        .write_all(text.as_bytes())
        .and_then(|()| encoder.finish())
        .unwrap_or_default();
    ByteString(packed)
}

/// The text `bytes` hold, or `None` when they are not a gzipped UTF-8 table of at most
/// [`MAX_UNPACKED`] bytes (a hand edit, a truncated object, a bomb): the caller then treats
/// the table as absent and writes it again.
pub fn unpack(bytes: &ByteString) -> Option<String> {
    let mut text = String::new();
    // One byte past the bound tells a table that ends there from one cut off by `take`.
    GzDecoder::new(bytes.0.as_slice())
        .take(MAX_UNPACKED + 1)
        .read_to_string(&mut text)
        .ok()?;
    (text.len() as u64 <= MAX_UNPACKED).then_some(text)
}

/// The table under the `binaryData` key `key` of `map`, unpacked; `None` when it is absent
/// or unreadable.
pub fn table(map: &ConfigMap, key: &str) -> Option<String> {
    unpack(map.binary_data.as_ref()?.get(key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_unpacks_to_what_was_packed() {
        let text = "example.com\tsmtp:[mx.example.com]:25\n";
        assert_eq!(unpack(&pack(text)).as_deref(), Some(text));
        assert_eq!(unpack(&pack("")).as_deref(), Some(""));
    }

    #[test]
    fn a_table_inflating_past_the_bound_is_refused_not_cut_short() {
        let bomb = pack(&"\n".repeat(MAX_UNPACKED as usize + 1));
        assert!(bomb.0.len() < 128 * 1024, "deflate packs a run of newlines ~1,000-fold");
        assert_eq!(unpack(&bomb), None);
        let largest = "\n".repeat(MAX_UNPACKED as usize);
        assert_eq!(unpack(&pack(&largest)).map(|text| text.len()), Some(largest.len()));
    }

    #[test]
    fn the_same_table_packs_to_the_same_bytes() {
        let text = "a.example\tsmtp:[10.0.0.1]:25\n".repeat(100);
        assert_eq!(pack(&text), pack(&text));
    }

    #[test]
    fn ten_thousand_domains_fit_in_one_object() {
        let text: String = (0..10_000)
            .map(|i| {
                format!(
                    "d{i}.scale.example.test\tsmtp:[mx.d{i}.scale.example.test]:25\n\
                     d{i}.scale.example.test.continuity-journal.invalid\tsmtp:[d{i}-standby-mail.tenant-{i}.svc.cluster.local]:25\n"
                )
            })
            .collect();
        assert!(text.len() > 1024 * 1024, "the text alone would not fit: {}", text.len());
        // binaryData travels base64-encoded: 4 bytes per 3.
        let encoded = pack(&text).0.len() * 4 / 3;
        assert!(encoded < 512 * 1024, "packed and encoded: {encoded} bytes");
    }

    #[test]
    fn what_is_not_gzip_unpacks_to_nothing() {
        assert_eq!(unpack(&ByteString(b"example.com smtp:[mx]:25\n".to_vec())), None);
        let mut truncated = pack(&"x".repeat(10_000));
        truncated.0.truncate(10);
        assert_eq!(unpack(&truncated), None);
    }
}
