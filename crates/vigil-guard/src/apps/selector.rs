//! An app's selector: the label matchers (`job="checkout"`) under which its series sit on its
//! Prometheus server, as its settings store them and as onboarding looks for them.

use vigil_ingest::prometheus::is_label_name;

/// The selector of an app whose settings name none: `job="<app>"`, quoted for PromQL.
pub fn default_selector(app: &str) -> String {
    let escaped = app.replace('\\', "\\\\").replace('"', "\\\"");
    format!("job=\"{escaped}\"")
}

/// Label matchers (`job="x", env=~"prod|canary"`), braces optional, as a comma-separated list
/// without braces; `None` when they are not matchers.
pub fn normalize_selector(selector: &str) -> Option<String> {
    let matchers: Vec<String> = split_matchers(selector)?
        .into_iter()
        .map(|(label, operator, quoted)| format!("{label}{operator}{quoted}"))
        .collect();
    Some(matchers.join(","))
}

/// Label matchers, braces optional, each as its label, its operator (`=`, `!=`, `=~`, `!~`)
/// and its value as written, quotes included; `None` when they are not matchers or there are
/// none.
pub fn split_matchers(selector: &str) -> Option<Vec<(&str, &'static str, &str)>> {
    let trimmed = selector.trim();
    let inner = match trimmed.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => trimmed,
    };
    let mut matchers = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
            .unwrap_or(rest.len());
        let label = &rest[..name_end];
        if !is_label_name(label) {
            return None;
        }
        let after_label = rest[name_end..].trim_start();
        let operator = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|operator| after_label.starts_with(operator))?;
        let after_operator = after_label[operator.len()..].trim_start();
        let value_length = quoted_length(after_operator)?;
        let value = &after_operator[..value_length];
        matchers.push((label, operator, value));
        let after_value = after_operator[value_length..].trim_start();
        rest = match after_value.strip_prefix(',') {
            Some(next) => next.trim_start(),
            None if after_value.is_empty() => after_value,
            None => return None,
        };
    }
    if matchers.is_empty() {
        return None;
    }
    Some(matchers)
}

/// The text of a quoted value as [`split_matchers`] gives it: quotes removed and, but in a raw
/// `` `...` `` string, backslash escapes (`\"`, `\\`, `\n`, `\t`) read; `None` for an
/// escape PromQL does not know.
pub fn unquote(quoted: &str) -> Option<String> {
    let mut characters = quoted.chars();
    let quote = characters.next()?;
    let inner = quoted.get(quote.len_utf8()..quoted.len().checked_sub(quote.len_utf8())?)?;
    if quote == '`' {
        return Some(inner.to_owned());
    }
    let mut text = String::with_capacity(inner.len());
    let mut escaped = false;
    for character in inner.chars() {
        if !escaped {
            if character == '\\' {
                escaped = true;
            } else {
                text.push(character);
            }
            continue;
        }
        escaped = false;
        text.push(match character {
            'n' => '\n',
            't' => '\t',
            '\\' | '"' | '\'' => character,
            _ => return None,
        });
    }
    Some(text)
}

/// The length of a quoted string at the start of `text` (`"..."`, `'...'` with backslash
/// escapes, or a raw `` `...` ``), quotes included.
fn quoted_length(text: &str) -> Option<usize> {
    let quote = text
        .chars()
        .next()
        .filter(|first| matches!(first, '"' | '\'' | '`'))?;
    let mut escaped = false;
    for (position, character) in text.char_indices().skip(1) {
        if escaped {
            escaped = false;
            continue;
        }
        if character == '\\' && quote != '`' {
            escaped = true;
            continue;
        }
        if character == quote {
            return Some(position + character.len_utf8());
        }
    }
    None
}
