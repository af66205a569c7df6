//! Fixed byte layouts: records that are hashed or stored as their fields laid end to end,
//! integers big-endian, so every node produces the same bytes and byte order is numeric order.

/// Lays `fields` end to end in an `N`-byte record.
///
/// # Panics
/// If the fields do not fill exactly `N` bytes. Every layout is fixed, so that is a bug in
/// the layout's code, never a property of the data.
pub fn concat<const N: usize>(fields: &[&[u8]]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    for field in fields {
        out[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    assert_eq!(at, N, "the fields fill the fixed layout");
    out
}

/// The `M`-byte field at offset `at` of a fixed-layout record.
///
/// # Panics
/// If the field runs past the record's end (again a bug in the layout's code).
pub fn field<const M: usize>(record: &[u8], at: usize) -> [u8; M] {
    record[at..at + M]
        .try_into()
        .expect("the field lies inside the fixed layout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let record: [u8; 6] = concat(&[&[1, 2], &7u32.to_be_bytes()]);
        assert_eq!(record, [1, 2, 0, 0, 0, 7]);
        assert_eq!(field::<2>(&record, 0), [1, 2]);
        assert_eq!(u32::from_be_bytes(field(&record, 2)), 7);
    }

    #[test]
    #[should_panic(expected = "fill the fixed layout")]
    fn short_fields_are_a_bug() {
        let _: [u8; 4] = concat(&[&[1, 2]]);
    }
}
