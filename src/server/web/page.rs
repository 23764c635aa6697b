//! The page `GET /` serves, composed once at start: `page.html` with its
//! `/*STYLE*/` and `/*SCRIPT*/` markers replaced by `page.css` and
//! `page.js`, and the `Content-Security-Policy` that allows exactly that
//! style and that script, by the SHA-256 of each element's text.

use base64::Engine;
use ring::digest::{digest, SHA256};

/// The page's three files, embedded in the binary.
const HTML: &str = include_str!("page.html");
const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// The marker inside `<style>` that `page.css` replaces.
const STYLE_MARKER: &str = "/*STYLE*/";
/// The marker inside `<script>` that `page.js` replaces.
const SCRIPT_MARKER: &str = "/*SCRIPT*/";

/// The composed page and its policy.
#[derive(Debug, Clone)]
pub struct Page {
    /// The HTML with the style and the script in it.
    pub html: String,
    /// The `Content-Security-Policy` header's value.
    pub csp: String,
}

impl Page {
    /// The embedded page, or why its files do not fit together (a marker
    /// missing or repeated, or a file that would end its element early).
    pub fn embedded() -> Result<Page, String> {
        Page::compose(HTML, CSS, JS)
    }

    /// `html` with `css` and `js` in place of its markers, and the policy
    /// allowing exactly those two elements' texts.
    pub fn compose(html: &str, css: &str, js: &str) -> Result<Page, String> {
        let html = insert(html, STYLE_MARKER, css, "style")?;
        let html = insert(&html, SCRIPT_MARKER, js, "script")?;
        let style = element_text(&html, css, "style")?;
        let script = element_text(&html, js, "script")?;
        let csp = format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
            sha256(script),
            sha256(style)
        );
        Ok(Page { html, csp })
    }
}

/// Base64 of the SHA-256 of `text`, as a CSP hash source spells it.
pub fn sha256(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest(&SHA256, text.as_bytes()))
}

/// `html` with its one `marker` replaced by `content`, which must not
/// close its `<tag>` element itself.
fn insert(html: &str, marker: &str, content: &str, tag: &str) -> Result<String, String> {
    if html.matches(marker).count() != 1 {
        return Err(format!("page.html must hold {marker} exactly once"));
    }
    if content.to_ascii_lowercase().contains(&format!("</{tag}")) {
        return Err(format!("the {tag} must not contain </{tag}"));
    }
    Ok(html.replacen(marker, content, 1))
}

/// The whole text of the `<tag>` element that holds `content` in `html`:
/// what its CSP hash is taken of.
fn element_text<'h>(html: &'h str, content: &str, tag: &str) -> Result<&'h str, String> {
    let lower = html.to_ascii_lowercase();
    let at = lower
        .find(&format!("<{tag}"))
        .ok_or_else(|| format!("page.html has no <{tag}>"))?;
    let start = at + lower[at..].find('>').ok_or("an unclosed tag")? + 1;
    let end = start
        + lower[start..]
            .find(&format!("</{tag}"))
            .ok_or_else(|| format!("page.html does not close its <{tag}>"))?;
    let text = &html[start..end];
    if !text.contains(content) {
        return Err(format!(
            "the first <{tag}> of page.html is not the marker's"
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_page_composes_and_its_policy_names_both_hashes() {
        let page = Page::embedded().expect("the embedded page");
        assert!(page.html.contains(CSS) && page.html.contains(JS));
        assert!(!page.html.contains(STYLE_MARKER) && !page.html.contains(SCRIPT_MARKER));
        assert!(page
            .csp
            .starts_with("default-src 'none'; script-src 'sha256-"));
    }

    #[test]
    fn the_hashes_cover_the_whole_element_text() {
        let page = Page::compose(
            "<style>\n/*STYLE*/\n</style><SCRIPT type=module> /*SCRIPT*/</SCRIPT>",
            "b{}",
            "go()",
        )
        .expect("compose");
        assert_eq!(
            page.html,
            "<style>\nb{}\n</style><SCRIPT type=module> go()</SCRIPT>"
        );
        let script = format!("script-src 'sha256-{}'", sha256(" go()"));
        let style = format!("style-src 'sha256-{}'", sha256("\nb{}\n"));
        assert!(page.csp.contains(&script), "{}", page.csp);
        assert!(page.csp.contains(&style), "{}", page.csp);
        // The known digest of the empty string, so that the encoding is
        // the one browsers compare with.
        assert_eq!(sha256(""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }

    #[test]
    fn files_that_do_not_fit_are_refused() {
        assert!(Page::compose("<style></style><script>/*SCRIPT*/</script>", "", "").is_err());
        assert!(Page::compose(
            "<style>/*STYLE*/</style><script>/*SCRIPT*//*SCRIPT*/</script>",
            "",
            ""
        )
        .is_err());
        assert!(Page::compose(
            "<style>/*STYLE*/</style><script>/*SCRIPT*/</script>",
            "",
            "x='</script>'"
        )
        .is_err());
    }
}
