//! `vigil replay --server URL`: a replay of the server's own stored releases, started through
//! `POST /api/v1/replays`, followed until it finishes, and reported as a corpus replay is
//! (with the figures per cause and over time, and the `summary` line).

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::progress::Progress;

/// How often the run's progress is asked for.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// How long the server may stay out of reach before the command gives up.
const UNREACHABLE_POLLS: usize = 120;

/// What to ask the server for.
#[derive(Debug)]
pub struct HistoryArgs<'a> {
    pub server: &'a str,
    pub token: Option<&'a str>,
    /// `promoted`, `none` or a version number.
    pub model: &'a str,
    pub app: Option<&'a str>,
    /// Where to write one JSON line per replayed release; `-` for standard output.
    pub out: &'a str,
}

/// `promoted`, `none` or a version number, as the request's `model`.
fn model_value(model: &str) -> Result<Value> {
    match model {
        "promoted" | "none" => Ok(json!(model)),
        number => match number.parse::<i64>() {
            Ok(version) if version > 0 => Ok(json!(version)),
            _ => bail!("--model must be promoted, none or a model version number, not {model:?}"),
        },
    }
}

fn server_url(text: &str) -> Result<String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .with_context(|| {
            format!("--server {text:?} is not a URL: give the scheme, for example http://{text}")
        })?;
    if rest.trim_end_matches('/').is_empty() {
        bail!("--server {text:?} names no host");
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// One call to the server: its status and JSON answer, or why it could not be reached.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), ureq::Error> {
    let bearer = format!("Bearer {token}");
    let mut response = match body {
        Some(body) => agent
            .post(url)
            .header("Authorization", &bearer)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())?,
        None if method == "GET" => agent.get(url).header("Authorization", &bearer).call()?,
        None => agent
            .post(url)
            .header("Authorization", &bearer)
            .send_empty()?,
    };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, answer))
}

fn refused(status: u16, answer: &Value) -> anyhow::Error {
    let reason = answer["error"]
        .as_str()
        .map_or_else(|| answer.to_string(), str::to_owned);
    anyhow::anyhow!("the server answered {status}: {reason}")
}

pub fn run(args: HistoryArgs<'_>) -> Result<()> {
    let base = server_url(args.server)?;
    let token = match args.token {
        Some(token) => token.to_owned(),
        None => {
            std::env::var("VIGIL_TOKEN").context("no token: pass --token or set VIGIL_TOKEN")?
        }
    };
    let mut request = json!({ "model": model_value(args.model)? });
    if let Some(app) = args.app {
        request["app"] = json!(app);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let start_url = format!("{base}/api/v1/replays");
    let (status, started) = call(&agent, "POST", &start_url, &token, Some(&request))
        .with_context(|| format!("cannot reach {start_url}"))?;
    if status != 202 {
        return Err(refused(status, &started));
    }
    let id = started["id"]
        .as_i64()
        .with_context(|| format!("unexpected answer from {start_url}: {started}"))?;
    let run_url = format!("{base}/api/v1/replays/{id}");
    let mut progress: Option<Progress> = None;
    let mut unreachable = 0;
    let run = loop {
        std::thread::sleep(POLL_EVERY);
        let (status, run) = match call(&agent, "GET", &run_url, &token, None) {
            Ok(answer) => answer,
            Err(error) => {
                unreachable += 1;
                if unreachable > UNREACHABLE_POLLS {
                    bail!("cannot reach {run_url}: {error}");
                }
                continue;
            }
        };
        unreachable = 0;
        if status != 200 {
            return Err(refused(status, &run));
        }
        if let Some(total) = run["total"].as_u64() {
            let bar = progress.get_or_insert_with(|| Progress::new("replaying", total as usize));
            bar.advance_to(run["done"].as_u64().unwrap_or(0) as usize);
        }
        if run["state"] != "running" {
            break run;
        }
    };
    if let Some(bar) = progress.as_mut() {
        bar.finish();
    }
    if run["state"] != "finished" {
        bail!(
            "replay {id} failed: {}",
            run["error"].as_str().unwrap_or("no reason given")
        );
    }
    let report = &run["result"];
    write_rows(report, args.out)?;
    let mut text = render_report(&run, report);
    if args.out == "-" {
        let _ = std::io::stderr().write_all(text.as_bytes());
    } else {
        text.push_str(&format!("results written to {}\n", args.out));
        let _ = std::io::stdout().write_all(text.as_bytes());
    }
    Ok(())
}

/// One JSON line per replayed release.
fn write_rows(report: &Value, out: &str) -> Result<()> {
    let mut writer: Box<dyn Write> = if out == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(out).with_context(|| format!("cannot create {out}"))?;
        Box::new(std::io::BufWriter::new(file))
    };
    for row in report["releases"].as_array().into_iter().flatten() {
        serde_json::to_writer(&mut writer, row)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    Ok(())
}

fn rate(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "n/a".to_owned(), |value| format!("{value:.3}"))
}

fn minutes(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "n/a".to_owned(), |value| format!("{value:.1} min"))
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// Precision where something was paused, recall where something was faulty; `n/a` otherwise.
fn precision_and_recall(figures: &Value) -> (String, String) {
    let paused = count(&figures["tp"]) + count(&figures["fp"]);
    let faulty = count(&figures["tp"]) + count(&figures["fn"]);
    let defined = |known: u64, value: &Value| {
        if known == 0 {
            "  n/a".to_owned()
        } else {
            rate(value)
        }
    };
    (
        defined(paused, &figures["precision"]),
        defined(faulty, &figures["recall"]),
    )
}

/// The report in the corpus replay's words, then per cause and over time.
fn render_report(run: &Value, report: &Value) -> String {
    let counts = &report["counts"];
    let figures = &report["overall"];
    let rows = report["releases"].as_array().map_or(&[][..], Vec::as_slice);
    let paused = rows.iter().filter(|row| row["verdict"] == "fault").count();
    let recommended = rows
        .iter()
        .filter(|row| row["verdict"] == "anomaly")
        .count();
    let model = match run["model_version"].as_i64() {
        Some(version) => format!("model version {version}"),
        None => "the funnel alone".to_owned(),
    };
    let mut text = format!(
        "replayed {} stored releases with {model}: {paused} paused, {recommended} recommended\n\
         labelled: {} faults, {} healthy ({} marked a false alarm, {} unreviewed); left out: {} \
         running, {} unlabelled{}\n",
        rows.len(),
        count(&counts["faults"]),
        count(&counts["healthy_reviewed"]) + count(&counts["healthy_unreviewed"]),
        count(&counts["healthy_reviewed"]),
        count(&counts["healthy_unreviewed"]),
        count(&counts["running"]),
        count(&counts["unlabelled"]),
        match count(&counts["failed"]) {
            0 => String::new(),
            failed => format!("; {failed} could not be replayed"),
        },
    );
    text.push_str(&format!(
        "precision {}  recall {}  f1 {}  (tp {} fp {} fn {} tn {})\n\
         time to pause: median {}, p90 {}\n\
         recommendations: false recommendations {} of healthy releases, recommendation \
         precision {}\n",
        rate(&figures["precision"]),
        rate(&figures["recall"]),
        rate(&figures["f1"]),
        count(&figures["tp"]),
        count(&figures["fp"]),
        count(&figures["fn"]),
        count(&figures["tn"]),
        minutes(&figures["delay_min_median"]),
        minutes(&figures["delay_min_p90"]),
        rate(&figures["healthy_recommended"]),
        rate(&figures["recommendation_precision"]),
    ));
    text.push_str("per cause (paused / releases, precision, recall, time to pause median):\n");
    for row in report["per_cause"].as_array().into_iter().flatten() {
        let cause_figures = &row["figures"];
        let (precision, recall) = precision_and_recall(cause_figures);
        text.push_str(&format!(
            "  {:40} {:4} / {:4}  {precision}  {recall}  {}\n",
            row["cause"].as_str().unwrap_or_default(),
            count(&cause_figures["tp"]) + count(&cause_figures["fp"]),
            count(&cause_figures["releases"]),
            minutes(&cause_figures["delay_min_median"]),
        ));
    }
    text.push_str(&format!(
        "over time, per {} (releases, precision, recall, time to pause median):\n",
        report["period"].as_str().unwrap_or("day")
    ));
    for point in report["over_time"].as_array().into_iter().flatten() {
        let point_figures = &point["figures"];
        let (precision, recall) = precision_and_recall(point_figures);
        text.push_str(&format!(
            "  {}  {:4}  {precision}  {recall}  {}\n",
            vigil_core::text::utc_date(point["start"].as_i64().unwrap_or(0)),
            count(&point_figures["releases"]),
            minutes(&point_figures["delay_min_median"]),
        ));
    }
    text.push_str(&format!("summary {}\n", summary_line(figures)));
    text
}

/// The order of the fields of a corpus replay's `summary` line.
const SUMMARY_ORDER: [&str; 14] = [
    "releases",
    "missing",
    "tp",
    "fp",
    "fn",
    "tn",
    "precision",
    "recall",
    "f1",
    "delay_min_median",
    "delay_min_p90",
    "anomaly_recommended",
    "healthy_recommended",
    "recommendation_precision",
];

/// The figures as one JSON object with its fields in a corpus replay's order (any other
/// after them, by name), so that both summaries read alike.
fn summary_line(figures: &Value) -> String {
    let Some(object) = figures.as_object() else {
        return figures.to_string();
    };
    let known = SUMMARY_ORDER
        .iter()
        .copied()
        .filter(|key| object.contains_key(*key));
    let others = object
        .keys()
        .map(String::as_str)
        .filter(|key| !SUMMARY_ORDER.contains(key));
    let fields: Vec<String> = known
        .chain(others)
        .map(|key| format!("{}:{}", Value::from(key), object[key]))
        .collect();
    format!("{{{}}}", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_promoted_none_or_a_version() {
        assert_eq!(model_value("none").unwrap(), json!("none"));
        assert_eq!(model_value("3").unwrap(), json!(3));
        assert!(model_value("0").is_err());
        assert!(model_value("best").is_err());
        assert!(server_url("localhost:8080").is_err());
        assert_eq!(server_url("http://h:1/").unwrap(), "http://h:1");
    }

    #[test]
    fn the_summary_keeps_the_corpus_replay_s_order() {
        let figures = json!({"tp": 1, "zeta": 2, "releases": 3, "precision": 0.5});
        let line = summary_line(&figures);
        assert_eq!(line, r#"{"releases":3,"tp":1,"precision":0.5,"zeta":2}"#);
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed, figures);
    }
}
