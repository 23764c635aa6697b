//! The line being typed: editing by grapheme (what the user sees as one
//! character, an emoji with its modifiers included), the history of the
//! lines entered, completion, and how the line fits in one terminal row.
//!
//! Pure: keys in, the new line (or a line entered) out, so that every
//! editing rule is tested without a terminal. Widths come from
//! `unicode-width`, so CJK and emoji count two columns.

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use super::keys::Key;

/// Longest line the editor holds, in bytes: more typed is ignored. The
/// server's default line limit is 1024; this leaves room for a larger one.
pub(super) const MAX_LINE: usize = 64 * 1024;
/// Lines kept in the history; the oldest is forgotten first.
pub(super) const MAX_HISTORY: usize = 500;

/// What a key did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Edit {
    /// The line or the cursor changed, or nothing did.
    Changed,
    /// Enter: this line was entered, and the editor is empty again.
    Entered(String),
    /// Ctrl-D on an empty line: the user wants to leave.
    Leave,
    /// Ctrl-C.
    Interrupt,
    /// Tab: complete the word before the cursor (see
    /// [`Editor::complete`]).
    Complete,
    /// Ctrl-L: draw everything again.
    Redraw,
}

/// The line being typed and the lines entered before it.
#[derive(Debug, Default)]
pub(super) struct Editor {
    line: String,
    /// Byte offset of the cursor, always at a grapheme boundary.
    cursor: usize,
    history: Vec<String>,
    /// While browsing the history: the entry shown, and the line that was
    /// being typed before browsing started.
    browsing: Option<(usize, String)>,
    /// Inside a bracketed paste: Tab is text, not completion.
    pasting: bool,
    /// First visible byte of the line when it is wider than its row.
    scroll: usize,
}

impl Editor {
    /// The line as typed.
    #[cfg(test)]
    pub(super) fn line(&self) -> &str {
        &self.line
    }

    /// Applies one key.
    pub(super) fn key(&mut self, key: Key) -> Edit {
        match key {
            Key::Char(c) => self.insert(c.encode_utf8(&mut [0; 4])),
            Key::Tab if self.pasting => self.insert(" "),
            Key::Tab => return Edit::Complete,
            Key::Enter => return self.enter(),
            Key::Backspace | Key::Ctrl('h') => {
                let start = self.previous(self.cursor);
                self.remove(start..self.cursor);
            }
            Key::Delete => self.remove(self.cursor..self.next(self.cursor)),
            Key::Left | Key::Ctrl('b') => self.cursor = self.previous(self.cursor),
            Key::Right | Key::Ctrl('f') => self.cursor = self.next(self.cursor),
            Key::Home | Key::Ctrl('a') => self.cursor = 0,
            Key::End | Key::Ctrl('e') => self.cursor = self.line.len(),
            Key::WordLeft => self.cursor = self.word_start(self.cursor),
            Key::WordRight => self.cursor = self.word_end(self.cursor),
            Key::Ctrl('k') => self.remove(self.cursor..self.line.len()),
            Key::Ctrl('u') => self.remove(0..self.cursor),
            Key::Ctrl('w') => self.remove(self.word_start(self.cursor)..self.cursor),
            Key::Up | Key::Ctrl('p') => self.older(),
            Key::Down | Key::Ctrl('n') => self.newer(),
            Key::Ctrl('d') if self.line.is_empty() => return Edit::Leave,
            Key::Ctrl('d') => self.clear(),
            Key::Ctrl('c') => return Edit::Interrupt,
            Key::Ctrl('l') => return Edit::Redraw,
            Key::PasteStart => self.pasting = true,
            Key::PasteEnd => self.pasting = false,
            Key::Ctrl(_) | Key::Escape => {}
        }
        Edit::Changed
    }

    /// Empties the line (history browsing ends too).
    pub(super) fn clear(&mut self) {
        self.line.clear();
        self.cursor = 0;
        self.scroll = 0;
        self.browsing = None;
    }

    /// Keeps `line` in the history (not a blank line, nor the same line
    /// twice in a row).
    pub(super) fn remember(&mut self, line: &str) {
        if line.trim().is_empty() || self.history.last().is_some_and(|last| last == line) {
            return;
        }
        if self.history.len() == MAX_HISTORY {
            self.history.remove(0);
        }
        self.history.push(line.to_owned());
    }

    /// The word the cursor ends, for completion, and whether it is the
    /// line's first word.
    pub(super) fn word_before_cursor(&self) -> (&str, bool) {
        let start = self.line[..self.cursor]
            .rfind(' ')
            .map_or(0, |space| space + 1);
        let first = self.line[..start].trim().is_empty();
        (&self.line[start..self.cursor], first)
    }

    /// Completes the word before the cursor from `candidates`: one match
    /// is completed with a space after it; several are completed as far as
    /// they agree, and returned so that they can be shown; none does
    /// nothing.
    pub(super) fn complete<'a>(
        &mut self,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Vec<&'a str> {
        let (word, _) = self.word_before_cursor();
        let word = word.to_owned();
        let mut matches: Vec<&str> = candidates
            .into_iter()
            .filter(|c| c.starts_with(word.as_str()) && c.len() > word.len())
            .collect();
        matches.sort_unstable();
        matches.dedup();
        let Some(first) = matches.first() else {
            return matches;
        };
        if matches.len() == 1 {
            let rest = format!("{} ", &first[word.len()..]);
            self.insert(&rest);
            return Vec::new();
        }
        let common = matches[1..]
            .iter()
            .map(|m| common_prefix(first, m))
            .min()
            .unwrap_or(first.len());
        if common > word.len() {
            let rest = first[word.len()..common].to_owned();
            self.insert(&rest);
        }
        matches
    }

    /// What of the line fits in `width` columns after a prompt of
    /// `prompt_width`, and the cursor's column: the line scrolls
    /// sideways to keep the cursor in view, never wrapping to a second
    /// row (the last column is left empty so the terminal never wraps).
    pub(super) fn view(&mut self, width: usize, prompt_width: usize) -> (&str, usize) {
        let room = width.saturating_sub(prompt_width + 1).max(1);
        let width_of = |text: &str| UnicodeWidthStr::width(text);
        if self.cursor < self.scroll {
            self.scroll = self.cursor;
        }
        // What must fit: the text before the cursor, the character under
        // it and the one after (so that a space under the cursor does not
        // hide that the line goes on).
        let under = self.next(self.next(self.cursor));
        while self.scroll < self.cursor && width_of(&self.line[self.scroll..under]) > room {
            self.scroll = self.next(self.scroll);
        }
        // Show as much as fits before the cursor when the line got shorter.
        while self.scroll > 0 {
            let earlier = self.previous(self.scroll);
            if width_of(&self.line[earlier..under]) > room {
                break;
            }
            self.scroll = earlier;
        }
        let mut end = self.scroll;
        for grapheme in self.line[self.scroll..].graphemes(true) {
            if width_of(&self.line[self.scroll..end + grapheme.len()]) > room {
                break;
            }
            end += grapheme.len();
        }
        let column = prompt_width + width_of(&self.line[self.scroll..self.cursor]);
        (&self.line[self.scroll..end], column)
    }

    fn insert(&mut self, text: &str) {
        if self.line.len() + text.len() > MAX_LINE {
            return;
        }
        self.line.insert_str(self.cursor, text);
        self.cursor += text.len();
        // A combining mark joins the grapheme before it: keep the cursor
        // at a boundary.
        self.cursor = self.boundary_at_or_after(self.cursor);
    }

    fn remove(&mut self, range: std::ops::Range<usize>) {
        self.cursor = range.start;
        self.line.replace_range(range, "");
        self.scroll = self.scroll.min(self.cursor);
    }

    fn enter(&mut self) -> Edit {
        let line = std::mem::take(&mut self.line);
        self.clear();
        Edit::Entered(line)
    }

    /// Shows the previous history entry, keeping the line typed so far.
    fn older(&mut self) {
        let at = match &self.browsing {
            Some((at, _)) => at.checked_sub(1),
            None => self.history.len().checked_sub(1),
        };
        let Some(at) = at else { return };
        if self.browsing.is_none() {
            self.browsing = Some((at, self.line.clone()));
        }
        if let Some((shown, _)) = &mut self.browsing {
            *shown = at;
        }
        self.show(self.history[at].clone());
    }

    /// Shows the next history entry, or the line typed before browsing.
    fn newer(&mut self) {
        let Some((at, draft)) = self.browsing.take() else {
            return;
        };
        if at + 1 < self.history.len() {
            self.browsing = Some((at + 1, draft));
            self.show(self.history[at + 1].clone());
        } else {
            self.show(draft);
        }
    }

    fn show(&mut self, line: String) {
        self.line = line;
        self.cursor = self.line.len();
        self.scroll = 0;
    }

    /// The grapheme boundary before `at`.
    fn previous(&self, at: usize) -> usize {
        self.line[..at]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(start, _)| start)
    }

    /// The grapheme boundary after `at`.
    fn next(&self, at: usize) -> usize {
        self.line[at..]
            .graphemes(true)
            .next()
            .map_or(at, |grapheme| at + grapheme.len())
    }

    /// The first grapheme boundary at or after `at`.
    fn boundary_at_or_after(&self, at: usize) -> usize {
        for (start, grapheme) in self.line.grapheme_indices(true) {
            let end = start + grapheme.len();
            if start >= at {
                return start;
            }
            if end >= at {
                return end;
            }
        }
        self.line.len()
    }

    /// Where the word before `at` starts (spaces before it skipped).
    fn word_start(&self, at: usize) -> usize {
        let before = self.line[..at].trim_end_matches(' ');
        before.rfind(' ').map_or(0, |space| space + 1)
    }

    /// Where the word after `at` ends (spaces before it skipped).
    fn word_end(&self, at: usize) -> usize {
        let after = &self.line[at..];
        let skipped = after.len() - after.trim_start_matches(' ').len();
        let word = after[skipped..].find(' ').unwrap_or(after.len() - skipped);
        at + skipped + word
    }
}

/// The length of what `a` and `b` start with alike, at a character
/// boundary of both.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((at, _), _)| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(editor: &mut Editor, text: &str) {
        for c in text.chars() {
            editor.key(Key::Char(c));
        }
    }

    fn keys(editor: &mut Editor, keys: &[Key]) {
        for &key in keys {
            editor.key(key);
        }
    }

    #[test]
    fn typing_moving_and_deleting() {
        let mut editor = Editor::default();
        typed(&mut editor, "helo world");
        keys(&mut editor, &[Key::WordLeft, Key::Left, Key::Left]);
        typed(&mut editor, "l");
        assert_eq!(editor.line(), "hello world");
        keys(&mut editor, &[Key::End, Key::Ctrl('w')]);
        assert_eq!(editor.line(), "hello ");
        keys(
            &mut editor,
            &[Key::Home, Key::Delete, Key::Ctrl('e'), Key::Backspace],
        );
        assert_eq!(editor.line(), "ello");
        keys(&mut editor, &[Key::Ctrl('a'), Key::WordRight]);
        typed(&mut editor, "!");
        keys(&mut editor, &[Key::Ctrl('a'), Key::Ctrl('k')]);
        assert_eq!(editor.line(), "");
        typed(&mut editor, "abc def");
        keys(&mut editor, &[Key::Left, Key::Left, Key::Ctrl('u')]);
        assert_eq!(editor.line(), "ef");
    }

    #[test]
    fn wide_and_combined_characters_move_as_one() {
        let mut editor = Editor::default();
        typed(&mut editor, "a漢字👍🏽e\u{301}b");
        keys(&mut editor, &[Key::Left, Key::Left, Key::Backspace]);
        assert_eq!(editor.line(), "a漢字e\u{301}b");
        keys(&mut editor, &[Key::Home, Key::Right, Key::Delete]);
        assert_eq!(editor.line(), "a字e\u{301}b");
        let (shown, column) = editor.view(80, 2);
        assert_eq!(shown, "a字e\u{301}b");
        assert_eq!(column, 2 + 1);
        keys(&mut editor, &[Key::End]);
        assert_eq!(editor.view(80, 2).1, 2 + 1 + 2 + 1 + 1);
    }

    #[test]
    fn a_long_line_scrolls_within_one_row() {
        let mut editor = Editor::default();
        let text = "漢".repeat(30);
        typed(&mut editor, &text);
        let (shown, column) = editor.view(20, 2);
        assert!(shown.width() <= 17, "{shown}");
        assert!(column < 20);
        keys(&mut editor, &[Key::Home]);
        let (shown, column) = editor.view(20, 2);
        assert_eq!(column, 2);
        assert!(text.starts_with(shown));
        keys(&mut editor, &[Key::End, Key::Ctrl('u')]);
        assert_eq!(editor.view(20, 2), ("", 2));
    }

    #[test]
    fn the_wide_character_under_the_cursor_is_in_view() {
        let mut editor = Editor::default();
        typed(&mut editor, "abcdefgh漢字");
        keys(&mut editor, &[Key::Left, Key::Left]);
        // 12 columns, a prompt of 2: room for 9; "abcdefgh" is 8 wide and
        // 漢 under the cursor needs 2 more.
        let (shown, column) = editor.view(12, 2);
        assert!(shown.contains('漢'), "{shown:?}");
        assert!(shown.width() <= 9, "{shown:?}");
        assert_eq!(
            column,
            2 + shown.split('漢').next().unwrap_or_default().width()
        );
    }

    #[test]
    fn history_goes_back_and_returns_to_the_draft() {
        let mut editor = Editor::default();
        editor.remember("one");
        editor.remember("two");
        editor.remember("two");
        typed(&mut editor, "dra");
        keys(&mut editor, &[Key::Up]);
        assert_eq!(editor.line(), "two");
        keys(&mut editor, &[Key::Up, Key::Up]);
        assert_eq!(editor.line(), "one");
        keys(&mut editor, &[Key::Down]);
        assert_eq!(editor.line(), "two");
        keys(&mut editor, &[Key::Down]);
        assert_eq!(editor.line(), "dra");
    }

    #[test]
    fn enter_ctrl_d_and_ctrl_c() {
        let mut editor = Editor::default();
        typed(&mut editor, "hi");
        assert_eq!(editor.key(Key::Ctrl('d')), Edit::Changed);
        assert_eq!(editor.line(), "");
        assert_eq!(editor.key(Key::Ctrl('d')), Edit::Leave);
        typed(&mut editor, "x y");
        assert_eq!(editor.key(Key::Enter), Edit::Entered("x y".to_owned()));
        assert_eq!(editor.line(), "");
        assert_eq!(editor.key(Key::Ctrl('c')), Edit::Interrupt);
    }

    #[test]
    fn completion_of_one_and_of_several() {
        let mut editor = Editor::default();
        typed(&mut editor, "message ha");
        assert_eq!(editor.word_before_cursor(), ("ha", false));
        assert!(editor.complete(["hans", "vader"]).is_empty());
        assert_eq!(editor.line(), "message hans ");
        editor.clear();
        typed(&mut editor, "who");
        assert_eq!(editor.word_before_cursor(), ("who", true));
        assert_eq!(
            editor.complete(["whoelse", "whoelsesince", "block"]),
            vec!["whoelse", "whoelsesince"]
        );
        assert_eq!(editor.line(), "whoelse");
        assert!(editor.complete(["zzz"]).is_empty());
        assert_eq!(editor.line(), "whoelse");
    }

    #[test]
    fn tab_in_a_paste_is_text() {
        let mut editor = Editor::default();
        keys(&mut editor, &[Key::PasteStart, Key::Char('a'), Key::Tab]);
        keys(&mut editor, &[Key::Char('b'), Key::PasteEnd]);
        assert_eq!(editor.line(), "a b");
        assert_eq!(editor.key(Key::Tab), Edit::Complete);
    }
}
