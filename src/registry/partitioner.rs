//! Kafka's default partitioning of keyed records, as the Java client does
//! it: `toPositive(murmur2(key)) % partitions`.

use uuid::Uuid;

/// Kafka's murmur2 hash, bit for bit as the Java client's `Utils.murmur2`
/// (which its default partitioner applies to the key bytes).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java's ints wrap and its `>>>` is a logical shift: u32 arithmetic.
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // The tail, as Java's fall-through switch on `length % 4`.
    let tail = words.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: the sign bit cleared (not `abs`, which
/// overflows on `i32::MIN`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition Kafka's default partitioner gives a record keyed by `key`
/// on a topic of `partitions` partitions.
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    to_positive(murmur2(key)) % partitions.max(1)
}

/// The partition of an aggregate's records: they are keyed by the UUID's
/// hyphenated lower-case text.
pub fn partition_for(aggregate_id: Uuid, partitions: i32) -> i32 {
    partition_of(aggregate_id.hyphenated().to_string().as_bytes(), partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_own_test_vectors() {
        // Apache Kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
        }
        // Every tail length (0 to 3 bytes after the last word), values the
        // Java client gives.
        for (key, hash) in [
            ("1", -1_993_445_489),
            ("12", 126_087_238),
            ("123", -267_702_483),
            ("1234", -1_614_185_708),
            ("12345", -1_188_365_604),
        ] {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key}");
        }
    }

    #[test]
    fn the_partition_is_the_positive_hash_modulo_the_count() {
        assert_eq!(to_positive(-973_932_308), 1_173_551_340);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(partition_of(b"21", 3), 1_173_551_340 % 3);
        let id = Uuid::parse_str("6f1c7a3e-2d1b-4b8e-9c7f-0e4a5b6c7d8e").unwrap();
        let text = b"6f1c7a3e-2d1b-4b8e-9c7f-0e4a5b6c7d8e";
        assert_eq!(partition_for(id, 12), partition_of(text, 12));
        assert!((0..12).contains(&partition_for(id, 12)));
    }
}
