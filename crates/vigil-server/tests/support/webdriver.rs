//! A small W3C WebDriver client over `ureq`, enough to drive headless Chromium through
//! `chromedriver`: sessions, navigation, elements by CSS selector, clicks, typing, text,
//! scripts and screenshots. The driver process is killed and the browser profile removed on
//! drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The key WebDriver names an element reference by.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Why a WebDriver call failed.
#[derive(Debug)]
pub struct DriverError(pub String);

impl std::fmt::Display for DriverError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

pub type DriverResult<T> = Result<T, DriverError>;

/// Whether a browser can be driven here: `None` when both binaries are installed, else what
/// is missing.
pub fn missing_browser() -> Option<String> {
    let missing: Vec<&str> = [CHROMEDRIVER, CHROMIUM]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(missing.join(" and "))
    }
}

/// A found element.
#[derive(Debug, Clone)]
pub struct Element(String);

/// A running `chromedriver` with one browser session.
pub struct Browser {
    base: String,
    session: String,
    agent: ureq::Agent,
    driver: Child,
    profile: PathBuf,
}

/// A TCP port on the loopback interface that nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

impl Browser {
    /// Starts `chromedriver` on a free port and opens a headless Chromium session with a fresh
    /// profile directory.
    pub fn start() -> DriverResult<Browser> {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| DriverError(format!("cannot start {CHROMEDRIVER}: {error}")))?;
        let profile =
            std::env::temp_dir().join(format!("vigil-browser-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut browser = Browser {
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
            driver,
            profile,
        };
        browser.wait_for_driver()?;
        let arguments = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--window-size=1280,1000".to_string(),
            format!("--user-data-dir={}", browser.profile.display()),
        ];
        let created = browser.call(
            "POST",
            "/session",
            Some(json!({
                "capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": arguments},
                }}
            })),
        )?;
        browser.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| DriverError(format!("no session id in {created}")))?
            .to_string();
        Ok(browser)
    }

    fn wait_for_driver(&mut self) -> DriverResult<()> {
        for _ in 0..200 {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(DriverError(format!("{CHROMEDRIVER} exited: {status}")));
            }
            let ready = self
                .agent
                .get(&format!("{}/status", self.base))
                .call()
                .ok()
                .and_then(|mut response| response.body_mut().read_json::<Value>().ok())
                .is_some_and(|status| status["value"]["ready"] == true);
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(DriverError(format!("{CHROMEDRIVER} did not become ready")))
    }

    /// One WebDriver command; returns its `value`, or the driver's error message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> DriverResult<Value> {
        let url = format!("{}{path}", self.base);
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, Some(body)) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string().as_bytes()),
            (_, None) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send("{}".as_bytes()),
        };
        let mut response =
            sent.map_err(|error| DriverError(format!("{method} {path}: {error}")))?;
        let status = response.status().as_u16();
        let answer: Value = response
            .body_mut()
            .read_json()
            .map_err(|error| DriverError(format!("{method} {path}: unreadable answer: {error}")))?;
        let value = answer["value"].clone();
        if status >= 400 {
            return Err(DriverError(format!(
                "{method} {path}: {} {}",
                value["error"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or("")
            )));
        }
        Ok(value)
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) -> DriverResult<()> {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        )?;
        Ok(())
    }

    pub fn current_url(&self) -> DriverResult<String> {
        let value = self.call("GET", &self.session_path("/url"), None)?;
        Ok(value.as_str().unwrap_or_default().to_string())
    }

    fn element_of(value: &Value) -> DriverResult<Element> {
        value[ELEMENT_KEY]
            .as_str()
            .map(|id| Element(id.to_string()))
            .ok_or_else(|| DriverError(format!("not an element: {value}")))
    }

    /// The first element matching a CSS selector.
    pub fn find(&self, css: &str) -> DriverResult<Element> {
        let value = self.call(
            "POST",
            &self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Browser::element_of(&value)
    }

    /// Every element matching a CSS selector.
    pub fn find_all(&self, css: &str) -> DriverResult<Vec<Element>> {
        let value = self.call(
            "POST",
            &self.session_path("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        )?;
        value
            .as_array()
            .map(|items| items.iter().map(Browser::element_of).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// The first element matching `css`, waiting for it up to `seconds`.
    pub fn wait_for(&self, css: &str, seconds: u64) -> DriverResult<Element> {
        let tries = seconds * 10;
        for _ in 0..tries {
            if let Ok(element) = self.find(css) {
                return Ok(element);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.find(css)
    }

    pub fn click(&self, element: &Element) -> DriverResult<()> {
        self.call(
            "POST",
            &self.session_path(&format!("/element/{}/click", element.0)),
            None,
        )?;
        Ok(())
    }

    pub fn type_text(&self, element: &Element, text: &str) -> DriverResult<()> {
        self.call(
            "POST",
            &self.session_path(&format!("/element/{}/value", element.0)),
            Some(json!({ "text": text })),
        )?;
        Ok(())
    }

    /// The rendered text of an element.
    pub fn text(&self, element: &Element) -> DriverResult<String> {
        let value = self.call(
            "GET",
            &self.session_path(&format!("/element/{}/text", element.0)),
            None,
        )?;
        Ok(value.as_str().unwrap_or_default().to_string())
    }

    pub fn attribute(&self, element: &Element, name: &str) -> DriverResult<Option<String>> {
        let value = self.call(
            "GET",
            &self.session_path(&format!("/element/{}/attribute/{name}", element.0)),
            None,
        )?;
        Ok(value.as_str().map(str::to_string))
    }

    /// Runs a script in the page and returns what it returns.
    pub fn execute(&self, script: &str, arguments: Value) -> DriverResult<Value> {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": arguments})),
        )
    }

    /// Saves a PNG screenshot of the page to `path` (its folder is created).
    pub fn screenshot(&self, path: &Path) -> DriverResult<()> {
        let value = self.call("GET", &self.session_path("/screenshot"), None)?;
        let encoded = value
            .as_str()
            .ok_or_else(|| DriverError("the screenshot is not text".to_string()))?;
        let png = decode_base64(encoded)
            .ok_or_else(|| DriverError("the screenshot is not base64".to_string()))?;
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(|error| {
                DriverError(format!("cannot create {}: {error}", folder.display()))
            })?;
        }
        std::fs::write(path, png)
            .map_err(|error| DriverError(format!("cannot write {}: {error}", path.display())))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = self.session_path("");
            let _ = self.call("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Decodes standard base64 (with or without padding; whitespace skipped); `None` on a
/// character outside the alphabet.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len() / 4 * 3);
    let mut buffer = 0u32;
    let mut bits = 0;
    for character in text.bytes() {
        let sextet = match character {
            b'A'..=b'Z' => character - b'A',
            b'a'..=b'z' => character - b'a' + 26,
            b'0'..=b'9' => character - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(bytes)
}

/// Where the browser tests leave their screenshots: `target/browser-artifacts` of the
/// workspace (or of `CARGO_TARGET_DIR`).
pub fn artifacts_dir() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.ancestors().nth(2).unwrap_or(manifest_dir);
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("browser-artifacts")
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("a*b").is_none());
    }
}
