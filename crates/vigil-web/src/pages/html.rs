//! Small pieces of HTML shared by the pages: text, URL components, times and the badges that
//! tell a state, a verdict or an app's onboarding by text and shape, never by colour alone.
//!
//! The pages are `maud` templates, which escape every spliced value by default. Values spliced
//! as [`Text`] also have their single quotes escaped, as the pages always did.

use std::fmt::{self, Write};

use maud::{html, Markup, PreEscaped, Render};
use vigil_core::release::ReleaseState;
use vigil_core::scorecard::RowVerdict;
use vigil_core::text::utc;
use vigil_core::Verdict;
use vigil_onboarding::ConnectionState;

/// Writes `text` into `out` made safe for HTML content and quoted attribute values (single
/// quotes included, which maud's own escaping leaves as they are).
fn escape_into(text: &str, out: &mut String) {
    let mut written = 0;
    for (position, character) in text.char_indices() {
        let entity = match character {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&text[written..position]);
        out.push_str(entity);
        written = position + character.len_utf8();
    }
    out.push_str(&text[written..]);
}

/// Data spliced into a page: escaped like maud's own splices, single quotes too.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a>(pub &'a str);

impl Render for Text<'_> {
    fn render_to(&self, buffer: &mut String) {
        escape_into(self.0, buffer);
    }
}

/// Text made safe for one component of a URL (a path segment or a query value): every byte
/// but the unreserved ones is percent-encoded.
#[derive(Debug, Clone, Copy)]
pub struct UrlComponent<'a>(pub &'a str);

impl fmt::Display for UrlComponent<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                formatter.write_char(char::from(byte))?;
            } else {
                write!(formatter, "%{byte:02X}")?;
            }
        }
        Ok(())
    }
}

/// Percent-encodes `text` for a URL path segment or query value.
pub fn url(text: &str) -> UrlComponent<'_> {
    UrlComponent(text)
}

/// A `<time>` element with the full UTC time as text and its machine-readable form.
pub fn time_element(unix: i64) -> Markup {
    let text = utc(unix);
    let machine = format!("{}Z", text.trim_end_matches(" UTC").replace(' ', "T"));
    html! { time datetime=(machine) { (text) } }
}

/// Shapes of the small icons beside a state or verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An octagon with a bar: stopped, fault.
    Stop,
    /// A triangle with a bar: anomaly.
    Warning,
    /// A circle with a tick: healthy, succeeded.
    Tick,
    /// Two bars: paused.
    Pause,
    /// A filled circle: running.
    Running,
    /// A hollow circle: pending, unknown.
    Hollow,
    /// A circle with a question mark's dot: not enough data.
    Question,
}

/// The shapes inside an icon's 16 × 16 box: constant markup of this file, never data, so it is
/// spliced as it is.
fn icon_paths(shape: Shape) -> &'static str {
    match shape {
        Shape::Stop => {
            "<path d=\"M5 1h6l4 4v6l-4 4H5l-4-4V5z\"/>\
             <path class=\"icon-cut\" d=\"M4.5 7h7v2h-7z\"/>"
        }
        Shape::Warning => {
            "<path d=\"M8 1l7.5 14H.5z\"/>\
             <path class=\"icon-cut\" d=\"M7 6h2v4.5H7zM7 11.5h2v2H7z\"/>"
        }
        Shape::Tick => {
            "<circle cx=\"8\" cy=\"8\" r=\"7.5\"/>\
             <path class=\"icon-cut\" d=\"M4 8.2l1.4-1.4 1.8 1.8 3.6-3.6 1.4 1.4-5 5z\"/>"
        }
        Shape::Pause => "<path d=\"M3 2h4v12H3zM9 2h4v12H9z\"/>",
        Shape::Running => "<path d=\"M3 1.5l11 6.5-11 6.5z\"/>",
        Shape::Hollow => "<circle cx=\"8\" cy=\"8\" r=\"6\" fill=\"none\" stroke-width=\"2.5\"/>",
        Shape::Question => {
            "<circle cx=\"8\" cy=\"8\" r=\"6\" fill=\"none\" stroke-width=\"2.5\" \
             stroke-dasharray=\"3 2\"/><circle cx=\"8\" cy=\"8\" r=\"1.8\"/>"
        }
    }
}

/// A badge: an icon of `shape` (hidden from assistive technology: the text beside it says
/// it), then `text`, in a span whose class sets its colour.
fn badge(class: &str, shape: Shape, text: &str) -> Markup {
    html! {
        span class={ "badge " (class) } {
            svg class="icon" viewBox="0 0 16 16" aria-hidden="true" focusable="false" {
                // Safe: the shapes are constants of this file (see `icon_paths`).
                (PreEscaped(icon_paths(shape)))
            }
            span { (Text(text)) }
        }
    }
}

/// True while a release may still change by itself (the guard or a pipeline moves it on).
pub fn is_running(state: ReleaseState) -> bool {
    matches!(
        state,
        ReleaseState::Pending
            | ReleaseState::Deploying
            | ReleaseState::Observing
            | ReleaseState::RollingBack
    )
}

/// A state in words, as a person reads it.
pub fn state_words(state: ReleaseState) -> &'static str {
    match state {
        ReleaseState::Pending => "pending",
        ReleaseState::Deploying => "deploying",
        ReleaseState::Observing => "observing",
        ReleaseState::Paused => "paused",
        ReleaseState::RollingBack => "rolling back",
        ReleaseState::RolledBack => "rolled back",
        ReleaseState::Succeeded => "succeeded",
        ReleaseState::Failed => "failed",
        ReleaseState::Cancelled => "cancelled",
    }
}

/// The badge of a release state.
pub fn state_badge(state: ReleaseState) -> Markup {
    let (class, shape) = match state {
        ReleaseState::Pending => ("neutral", Shape::Hollow),
        ReleaseState::Deploying | ReleaseState::Observing | ReleaseState::RollingBack => {
            ("running", Shape::Running)
        }
        ReleaseState::Paused => ("bad", Shape::Pause),
        ReleaseState::Succeeded => ("good", Shape::Tick),
        ReleaseState::RolledBack | ReleaseState::Failed | ReleaseState::Cancelled => {
            ("bad", Shape::Stop)
        }
    };
    badge(class, shape, state_words(state))
}

/// A verdict in words.
pub fn verdict_words(verdict: Option<Verdict>) -> &'static str {
    match verdict {
        Some(Verdict::Fault) => "fault",
        Some(Verdict::Anomaly) => "anomaly",
        Some(Verdict::Healthy) => "healthy",
        Some(Verdict::InsufficientData) => "insufficient data",
        None => "no verdict yet",
    }
}

/// The badge of a verdict (or of its absence).
pub fn verdict_badge(verdict: Option<Verdict>) -> Markup {
    let (class, shape) = match verdict {
        Some(Verdict::Fault) => ("bad", Shape::Stop),
        Some(Verdict::Anomaly) => ("warn", Shape::Warning),
        Some(Verdict::Healthy) => ("good", Shape::Tick),
        Some(Verdict::InsufficientData) => ("neutral", Shape::Question),
        None => ("neutral", Shape::Hollow),
    };
    badge(class, shape, verdict_words(verdict))
}

/// A scorecard row's verdict in words.
pub fn row_verdict_words(verdict: RowVerdict) -> &'static str {
    match verdict {
        RowVerdict::Fail => "fail",
        RowVerdict::Recommend => "recommend",
        RowVerdict::Pass => "pass",
        RowVerdict::NotEnoughData => "not enough data",
    }
}

/// The badge of a scorecard row's verdict.
pub fn row_verdict_badge(verdict: RowVerdict) -> Markup {
    let (class, shape) = match verdict {
        RowVerdict::Fail => ("bad", Shape::Stop),
        RowVerdict::Recommend => ("warn", Shape::Warning),
        RowVerdict::Pass => ("good", Shape::Tick),
        RowVerdict::NotEnoughData => ("neutral", Shape::Question),
    };
    badge(class, shape, row_verdict_words(verdict))
}

/// An app's onboarding state in words.
pub fn connection_words(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Connected => "connected",
        ConnectionState::Partial => "partly connected",
        ConnectionState::NotConnected => "not connected",
    }
}

/// The badge of an app's onboarding state.
pub fn connection_badge(state: ConnectionState) -> Markup {
    let (class, shape) = match state {
        ConnectionState::Connected => ("good", Shape::Tick),
        ConnectionState::Partial => ("warn", Shape::Warning),
        ConnectionState::NotConnected => ("bad", Shape::Stop),
    };
    badge(class, shape, connection_words(state))
}

/// The badge of a signal or family that arrives (`found`) or not, with `text` as its words.
pub fn found_badge(found: bool, text: &str) -> Markup {
    let (class, shape) = if found {
        ("good", Shape::Tick)
    } else {
        ("warn", Shape::Warning)
    };
    badge(class, shape, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            Text("<a href=\"x\">Tom & 'Jerry'</a>")
                .render()
                .into_string(),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(
            Text("plain ünïcode").render().into_string(),
            "plain ünïcode"
        );
        assert_eq!(Text("").render().into_string(), "");
    }

    #[test]
    fn url_components_encode_everything_but_unreserved_bytes() {
        assert_eq!(url("shop-42_a.b~c").to_string(), "shop-42_a.b~c");
        assert_eq!(url("a b/c?d=é").to_string(), "a%20b%2Fc%3Fd%3D%C3%A9");
    }

    #[test]
    fn times_are_utc_calendar_dates() {
        let out = time_element(1_700_000_000).into_string();
        assert_eq!(
            out,
            "<time datetime=\"2023-11-14T22:13:20Z\">2023-11-14 22:13:20 UTC</time>"
        );
    }

    #[test]
    fn badges_say_the_state_in_words_beside_a_hidden_icon() {
        let out = state_badge(ReleaseState::RollingBack).into_string();
        assert!(out.contains("aria-hidden=\"true\""));
        assert!(out.ends_with("<span>rolling back</span></span>"));
        let verdict = verdict_badge(None).into_string();
        assert!(verdict.contains("no verdict yet"));
        let connection = connection_badge(ConnectionState::Partial).into_string();
        assert!(
            connection.contains("<path d=\"M8 1l7.5 14H.5z\"/>"),
            "a triangle"
        );
        assert!(connection.ends_with("<span>partly connected</span></span>"));
    }
}
