//! The pub/sub messages' parsing and the bounds on what others may publish.

use super::*;

#[test]
fn messages_parse_and_reject_garbage() {
    assert_eq!(parse_head(b"P 7 abc"), Some((b'P', 7, &b"abc"[..])));
    assert_eq!(parse_ack(b"C 3 12"), Some((b'C', 3, 12)));
    assert_eq!(parse_head(b"P x abc"), None);
    assert_eq!(parse_ack(b"P 1"), None);
    assert_eq!(parse_head(b""), None);
}

#[test]
fn only_a_node_id_is_a_sender() {
    assert!(is_node_id(b"0123456789abcdef"));
    assert!(is_node_id(format!("{:016x}", 7u64).as_bytes()));
    for forged in [
        &b""[..],
        b"0123456789abcde",
        b"0123456789abcdef0",
        b"0123456789ABCDEF",
    ] {
        assert!(!is_node_id(forged), "{forged:?}");
    }
    assert!(!is_node_id(&vec![b'a'; 256 * 1024]));
}

/// Anyone who may publish on Redis can send acks: their counts saturate, and the
/// acks kept for sends not yet known are bounded.
#[test]
fn forged_acks_neither_overflow_nor_pile_up() {
    let mut pubsub = PubSub::new(b"mixserve:ack:me".to_vec());
    assert!(pubsub.on_ack((b'P', 1), usize::MAX).is_none());
    assert!(pubsub.on_ack((b'P', 1), usize::MAX).is_none());
    assert_eq!(pubsub.early[&(b'P', 1)].1, usize::MAX);
    for id in 2..(MAX_EARLY as u64 + 100) {
        pubsub.on_ack((b'P', id), 1);
    }
    assert_eq!(pubsub.early.len(), MAX_EARLY);
}
