//! The release pages over HTTP: signing in, the list and its fragment, a paused release's
//! page, and the rules on who may act and from where. (`browser.rs` drives the same pages in a
//! real browser.)
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{input_value, server_with_paused_release, PageClient, TestServer};

const NOW: i64 = 1_700_000_000;

#[test]
fn pages_need_a_session_and_ingest_tokens_cannot_sign_in() {
    let server = TestServer::start(NOW);
    let mut client = PageClient::new(&server.base);
    let root = client.get("/");
    assert_eq!(root.status, 303);
    assert_eq!(root.location.as_deref(), Some("/releases"));
    let list = client.get("/releases?app=shop");
    assert_eq!(list.status, 303, "no session: sent to sign in");
    assert_eq!(
        list.location.as_deref(),
        Some("/signin?next=%2Freleases%3Fapp%3Dshop")
    );
    assert_eq!(client.get("/fragment/releases").status, 401);
    let form = client.get("/signin?next=/releases");
    assert_eq!(form.status, 200);
    assert!(form.body.contains("<label for=\"token\">API token</label>"));

    let ingest = client.sign_in(&server.ingest);
    assert_eq!(ingest.status, 403, "{}", ingest.body);
    assert!(ingest.body.contains("can only push data"));
    assert!(ingest.set_cookie.is_none());
    let unknown = client.sign_in("vgl_0123456789abcdef");
    assert_eq!(unknown.status, 401);
    assert!(unknown.set_cookie.is_none());
    let odd = client.sign_in("vgl; Path=/evil");
    assert_eq!(odd.status, 401, "a token with cookie syntax is refused");
    assert!(client.cookie.is_none());

    let elsewhere = client.post_form_from(
        "https://evil.example",
        "/signin",
        &[("token", &server.viewer)],
    );
    assert_eq!(elsewhere.status, 403, "sign-in from another site");
    assert!(elsewhere.set_cookie.is_none());

    let signed_in = client.sign_in(&server.viewer);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location.as_deref(), Some("/releases"));
    let cookie = signed_in.set_cookie.unwrap();
    assert!(cookie.starts_with("vigil_session=vgs_"), "{cookie}");
    assert!(
        !cookie.contains(&server.viewer),
        "the cookie holds no api token"
    );
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert_eq!(client.get("/releases").status, 200);

    let out = client.post_form("/signout", &[]);
    assert_eq!(out.status, 303);
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
}

/// Creates releases `(id, app)` of two batches on hosts h1 and h2, and reports the first
/// batch of the first one deployed.
fn create_two_batch_releases(server: &TestServer, releases: &[(&str, &str)]) {
    for (id, app) in releases {
        let (status, answer) = server.post(
            "/api/v1/releases",
            &server.admin,
            &json!({"id": id, "app": app, "version": "7", "hosts": ["h1", "h2"],
                    "batches": [{"hosts": ["h1"]}, {"hosts": ["h2"]}]}),
        );
        assert_eq!(status, 201, "{answer}");
    }
    let (status, _) = server.post(
        &format!("/api/v1/releases/{}/batches/0/deployed", releases[0].0),
        &server.admin,
        &json!({}),
    );
    assert_eq!(status, 200);
}

#[test]
fn the_list_filters_escapes_and_says_when_it_refreshes() {
    let server = TestServer::start(NOW);
    create_two_batch_releases(&server, &[("a1", "shop"), ("a2", "<b>cart</b>")]);
    let mut client = PageClient::new(&server.base);
    client.sign_in(&server.viewer);

    let all = client.get("/releases");
    assert_eq!(all.status, 200);
    assert!(all.body.contains("<a href=\"/releases/a1\">a1</a>"));
    assert!(
        all.body
            .contains("<a href=\"/releases\" aria-current=\"page\">Releases</a>"),
        "the header marks the current part of the pages"
    );
    assert!(all.body.contains("<a href=\"/apps\">Apps</a>"));
    assert!(
        all.body.contains("&lt;b&gt;cart&lt;/b&gt;"),
        "app names are escaped"
    );
    assert!(!all.body.contains("<b>cart</b>"));
    assert!(all.body.contains("data-running=\"true\""));
    assert!(all.body.contains("<td>1 of 2</td>"), "batches done");
    assert!(all.body.contains("<span>observing</span>"));

    let shop = client.get("/releases?app=shop&state=observing");
    assert!(shop.body.contains("/releases/a1\""));
    assert!(!shop.body.contains("/releases/a2\""));
    assert!(shop.body.contains("<option value=\"observing\" selected>"));
    let none = client.get("/releases?state=paused");
    assert!(none.body.contains("No release matches this filter."));
    assert!(none.body.contains("data-running=\"false\""));
    let bad = client.get("/releases?state=sleeping");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("unknown state"));

    let fragment = client.get("/fragment/releases?app=shop");
    assert_eq!(fragment.status, 200);
    assert!(fragment.body.starts_with("<section id=\"releases\""));
    assert!(fragment
        .body
        .contains("data-fragment=\"/fragment/releases?app=shop\""));
    assert!(!fragment.body.contains("<html"));
}

#[test]
fn batches_are_numbered_on_the_pages_as_in_the_api_and_the_transitions() {
    let server = TestServer::start(NOW);
    create_two_batch_releases(&server, &[("a1", "shop")]);
    let (_, transitions) = server.get("/api/v1/releases/a1/transitions", &server.viewer);
    assert_eq!(transitions[1]["reason"], "batch 0 deployed to 1 hosts");
    let mut client = PageClient::new(&server.base);
    client.sign_in(&server.viewer);
    let page = client.get("/releases/a1").body;
    assert!(
        page.contains("<span class=\"batch-name\">Batch 0</span> deployed at"),
        "{page}"
    );
    assert!(page.contains("<span class=\"batch-name\">Batch 1</span> not deployed yet"));

    let (server, bundle) = server_with_paused_release();
    let mut client = PageClient::new(&server.base);
    client.sign_in(&server.viewer);
    let page = client.get(&format!("/releases/{}", bundle.id)).body;
    let first = &bundle.batches[0];
    assert_eq!(first.index, 0);
    assert!(page.contains(">B0</text>"), "chart marker");
    assert!(page.contains("Deployed: batch 0 at "), "chart description");
    assert!(page.contains("B0 being the first"), "chart legend");
}

#[test]
fn a_paused_release_shows_why_with_a_chart_and_only_operators_act() {
    let (server, bundle) = server_with_paused_release();
    let path = format!("/releases/{}", bundle.id);
    let (_, verdict) = server.get(
        &format!("/api/v1/releases/{}/verdict", bundle.id),
        &server.viewer,
    );
    let reason = verdict["reason"].as_str().unwrap().to_string();

    let mut viewer = PageClient::new(&server.base);
    viewer.sign_in(&server.viewer);
    let seen = viewer.get(&path);
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert!(seen.body.contains("<span>paused</span>"));
    assert!(seen.body.contains("<span>fault</span>"));
    let escaped_reason = reason.replace('&', "&amp;").replace('\'', "&#39;");
    assert!(seen.body.contains(&escaped_reason), "the reason: {reason}");
    assert!(seen.body.contains("role=\"img\""), "a chart");
    assert!(seen.body.contains("<desc id=\"chart-0-desc\">"));
    assert!(seen.body.contains("class=\"pause\""), "the pause is marked");
    assert!(
        !seen.body.contains("name=\"action\""),
        "viewers get no action buttons"
    );
    assert!(
        !seen.body.contains("name=\"kind\""),
        "nor the feedback form"
    );

    // A viewer who forges the form anyway (with their own session value) is refused.
    let viewer_key = input_value(&seen.body, "form_key").unwrap();
    let forged = viewer.post_form(
        &format!("{path}/actions"),
        &[("form_key", &viewer_key), ("action", "cancel")],
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.body.contains("needs operator"));
    let forged_feedback = viewer.post_form(
        &format!("{path}/feedback"),
        &[("form_key", &viewer_key), ("kind", "false_alarm")],
    );
    assert_eq!(forged_feedback.status, 403);

    let mut operator = PageClient::new(&server.base);
    operator.sign_in(&server.operator);
    let page = operator.get(&path);
    assert!(page
        .body
        .contains("<button type=\"submit\" name=\"action\" value=\"resume\">"));
    assert!(page
        .body
        .contains("value=\"rollback\" class=\"danger\">Roll back</button>"));
    assert!(
        !page.body.contains("value=\"pause\""),
        "a paused release cannot be paused"
    );
    let key = input_value(&page.body, "form_key").unwrap();
    assert_ne!(key, viewer_key);

    // Requests from elsewhere are refused: another origin, or no session value.
    let cross_site = operator.post_form_from(
        "https://evil.example",
        &format!("{path}/actions"),
        &[("form_key", &key), ("action", "cancel")],
    );
    assert_eq!(cross_site.status, 403);
    let without_key = operator.post_form(&format!("{path}/actions"), &[("action", "cancel")]);
    assert_eq!(without_key.status, 403);
    assert!(without_key.body.contains("session value"));
    let (_, still) = server.get(&format!("/api/v1/releases/{}", bundle.id), &server.viewer);
    assert_eq!(
        still["state"], "paused",
        "nothing refused changed the release"
    );

    let resumed = operator.post_form(
        &format!("{path}/actions"),
        &[
            ("form_key", &key),
            ("action", "resume"),
            ("reason", "checked: a load test"),
        ],
    );
    assert_eq!(resumed.status, 303, "{}", resumed.body);
    assert_eq!(
        resumed.location.as_deref(),
        Some(format!("{path}?done=resume#summary").as_str())
    );
    let again = operator.post_form(
        &format!("{path}/actions"),
        &[("form_key", &key), ("action", "resume")],
    );
    assert_eq!(again.status, 409, "an observing release cannot be resumed");
    let sent = operator.post_form(
        &format!("{path}/feedback"),
        &[
            ("form_key", &key),
            ("kind", "false_alarm"),
            ("note", "a <load> test"),
        ],
    );
    assert_eq!(sent.status, 303, "{}", sent.body);
    let after = operator.get(&format!("{path}?done=feedback"));
    assert!(after.body.contains("Thank you: your feedback is stored."));
    assert!(after.body.contains("<q>a &lt;load&gt; test</q>"));
    assert!(
        after.body.contains("checked: a load test"),
        "the transition's reason"
    );

    let (_, transitions) = server.get(
        &format!("/api/v1/releases/{}/transitions", bundle.id),
        &server.viewer,
    );
    let resume = transitions
        .as_array()
        .unwrap()
        .iter()
        .find(|transition| transition["action"] == "resume")
        .unwrap();
    assert_eq!(resume["actor"], "operator");
    assert_eq!(resume["reason"], "checked: a load test");
    let (_, feedback) = server.get(
        &format!("/api/v1/releases/{}/feedback", bundle.id),
        &server.viewer,
    );
    assert_eq!(feedback[0]["kind"], "false_alarm");
    assert_eq!(feedback[0]["actor"], "operator");
}

#[test]
fn an_unknown_release_is_a_404_page() {
    let server = TestServer::start(NOW);
    let mut client = PageClient::new(&server.base);
    client.sign_in(&server.admin);
    let missing = client.get("/releases/nope");
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("no release nope"));
    let static_css = client.get("/static/vigil.css");
    assert_eq!(static_css.status, 200);
    assert!(static_css.body.contains(":focus-visible"));
}

/// The id of the token named `name`, as the admin API lists it.
fn token_id(server: &TestServer, name: &str) -> i64 {
    let (status, tokens) = server.get("/api/v1/tokens", &server.admin);
    assert_eq!(status, 200, "{tokens}");
    tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|token| token["name"] == name)
        .and_then(|token| token["id"].as_i64())
        .unwrap()
}

#[test]
fn a_session_ends_on_sign_out_on_revoke_and_after_twelve_hours() {
    let server = TestServer::start(NOW);
    let mut client = PageClient::new(&server.base);
    assert_eq!(client.sign_in(&server.operator).status, 303);
    let cookie = client.cookie.clone().unwrap();
    let session_id = cookie.trim_start_matches("vigil_session=");
    assert!(session_id.starts_with("vgs_"), "{cookie}");
    let (status, _) = server.get("/api/v1/releases", session_id);
    assert_eq!(status, 401, "a session id is no api token");
    assert_eq!(client.get("/releases").status, 200);

    // Signing out ends the session on the server: a copy of its cookie signs nobody in.
    let mut copy = PageClient::new(&server.base);
    copy.cookie = Some(cookie.clone());
    assert_eq!(copy.get("/releases").status, 200);
    let out = client.post_form("/signout", &[]);
    assert_eq!(out.status, 303);
    let after_sign_out = copy.get("/releases");
    assert_eq!(after_sign_out.status, 303, "{}", after_sign_out.body);
    assert!(after_sign_out
        .location
        .unwrap()
        .starts_with("/signin?next="));

    // Revoking the token ends its sessions, and the token stops working at once.
    let mut again = PageClient::new(&server.base);
    assert_eq!(again.sign_in(&server.operator).status, 303);
    assert_eq!(again.get("/releases").status, 200);
    let (status, _) = server.get("/api/v1/releases", &server.operator);
    assert_eq!(status, 200);
    let operator_id = token_id(&server, "operator");
    let (status, revoked) = server.post(
        &format!("/api/v1/tokens/{operator_id}/revoke"),
        &server.admin,
        &json!({}),
    );
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["revoked_at"], NOW);
    assert_eq!(again.get("/releases").status, 303, "the session ended");
    let (status, refused) = server.get("/api/v1/releases", &server.operator);
    assert_eq!(status, 401, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("revoked"),
        "{refused}"
    );
    let mut revoked_client = PageClient::new(&server.base);
    let refused_sign_in = revoked_client.sign_in(&server.operator);
    assert_eq!(refused_sign_in.status, 401);
    assert!(refused_sign_in.body.contains("api token was revoked"));
    assert!(refused_sign_in.set_cookie.is_none());

    // A session lasts twelve hours.
    let mut viewer = PageClient::new(&server.base);
    assert_eq!(viewer.sign_in(&server.viewer).status, 303);
    server.clock.advance(12 * 3600 - 1);
    assert_eq!(viewer.get("/releases").status, 200);
    server.clock.advance(1);
    assert_eq!(viewer.get("/releases").status, 303, "the session expired");
}

/// Markup, both quotes and an ampersand: what a hostile sender may put in a name.
const HOSTILE: &str = "<script>alert(\"x\")</script>&'";

/// `HOSTILE` as the pages must show it: every special character an entity.
const HOSTILE_ESCAPED: &str = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;";

/// An app, a host, a metric and a log line named with markup and quotes show escaped on every
/// page that renders them, and nowhere as markup.
#[test]
fn hostile_names_show_escaped_on_every_page() {
    let server = TestServer::start(NOW);
    let app = format!("app{HOSTILE}");
    let host = format!("host{HOSTILE}");
    let metric = format!("metric{HOSTILE}");
    let (status, answer) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({"id": "hostile-1", "app": app, "version": "1", "hosts": [host, "h2"]}),
    );
    assert_eq!(status, 201, "{answer}");
    server.ingest_samples(vec![
        json!({"host": host, "app": app, "metric": metric, "time": NOW - 60, "value": 1.0}),
    ]);
    let (status, answer) = server.post(
        "/api/v1/ingest/logs",
        &server.ingest,
        &json!({"key": "hostile-logs", "lines": [{"host": host, "app": app, "time": NOW - 10,
            "line": format!("2023-11-14 22:12:50 ERROR refused {HOSTILE} order")}]}),
    );
    assert_eq!(status, 200, "{answer}");
    let mut client = PageClient::new(&server.base);
    client.sign_in(&server.admin);

    let app_path = format!("/apps/{}", support::form_encode(&app));
    let pages: [(&str, &[&str]); 4] = [
        ("/releases", &["app"]),
        ("/releases/hostile-1", &["app", "host"]),
        ("/apps", &["app"]),
        (&app_path, &["app", "host", "metric", "refused "]),
    ];
    for (path, shown) in pages {
        let page = client.get(path);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(!page.body.contains("<script>"), "{path} holds markup");
        assert!(!page.body.contains(HOSTILE), "{path} holds the raw value");
        for prefix in shown {
            let escaped = format!("{prefix}{HOSTILE_ESCAPED}");
            assert!(
                page.body.contains(&escaped),
                "{path} does not show {escaped}: {}",
                page.body
            );
        }
    }
}

/// A healthy release's page shows its scorecard: a passing row for every metric, sortable by
/// the links of its headings; a bad sort is refused by name.
#[test]
fn a_healthy_release_s_page_shows_its_scorecard_sorted_by_the_column_asked() {
    let server = TestServer::start(1_800_000_000);
    let bundle = support::import_example(&server, support::HEALTHY_EXAMPLE);
    let path = format!("/releases/{}", bundle.id);
    let mut viewer = PageClient::new(&server.base);
    viewer.sign_in(&server.viewer);
    let page = viewer.get(&path);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page
        .body
        .contains("<h2 id=\"scorecard-title\">Scorecard</h2>"));
    let section = &page.body[page.body.find("id=\"scorecard\"").unwrap()..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(!section.contains("<span>fail</span>"), "{section}");
    let signals = support::scorecard_signals(&page.body);
    for meta in &bundle.metrics {
        assert!(
            signals.contains(&meta.name),
            "no row for {}: {signals:?}",
            meta.name
        );
    }
    assert!(signals.contains(&"silence".to_owned()));
    assert_eq!(
        section.matches("<span>pass</span>").count(),
        signals.len(),
        "every row passes: {section}"
    );
    // The headings sort: by signal, then the other way round.
    assert!(
        section.contains("href=\"?sort=signal&amp;order=asc#scorecard\""),
        "{section}"
    );
    let ascending = viewer.get(&format!("{path}?sort=signal&order=asc"));
    let descending = viewer.get(&format!("{path}?sort=signal&order=desc"));
    let mut expected = support::scorecard_signals(&ascending.body);
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(expected, sorted);
    expected.reverse();
    assert_eq!(support::scorecard_signals(&descending.body), expected);
    assert!(descending.body.contains("aria-sort=\"descending\""));
    let refused = viewer.get(&format!("{path}?sort=weight"));
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("sort must be"), "{}", refused.body);

    // The list shows each release's reason.
    let list = viewer.get("/releases");
    let release = server.state.store.release(&bundle.id).unwrap().unwrap();
    assert!(!release.reason.is_empty());
    assert!(list.body.contains("<th scope=\"col\">Reason</th>"));
    let shown: String = release.reason.chars().take(40).collect();
    let escaped = shown
        .replace('&', "&amp;")
        .replace('\'', "&#39;")
        .replace('<', "&lt;");
    assert!(list.body.contains(&escaped), "{}", list.body);
}
