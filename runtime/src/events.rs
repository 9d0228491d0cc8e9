//! Event helpers.

/// The API server refuses an Event whose note is over 1 KiB: cut it there, on a character
/// boundary, with an ellipsis.
pub fn event_note(note: String) -> String {
    const MAX: usize = 1024;
    if note.len() <= MAX {
        return note;
    }
    let mut end = MAX - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_are_cut_at_the_api_servers_limit_on_a_character_boundary() {
        assert_eq!(event_note("short".into()), "short");
        let long = "é".repeat(700); // 1400 bytes
        let cut = event_note(long);
        assert!(cut.len() <= 1024 && cut.ends_with('…'), "{}", cut.len());
    }
}
