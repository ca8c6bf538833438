//! Stored app settings are read in one place: a valid app reads alike through every reader, and
//! settings that no longer read are an error to the strict readers and no settings to the
//! lenient one.
#![allow(clippy::unwrap_used)]

use vigil_guard::apps::{all_stored_settings, stored_app_config, stored_settings, PULL_HOST_LABEL};

#[test]
fn every_reader_sees_the_same_settings_and_the_same_unreadable_ones() {
    let dir = vigil_store::testing::TempDir::new("app-settings").unwrap();
    let store = vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
    let readable = serde_json::json!({
        "prometheus": {"url": "http://127.0.0.1:9090", "queries": [{"metric": "cpu", "query": "up"}]},
        "log_pattern": "^(?P<message>.*)$"
    });
    store.put_app("shop", &readable).unwrap();
    store
        .put_app("old", &serde_json::json!({"retired_field": 1}))
        .unwrap();

    let shop = stored_settings(store.as_ref(), "shop")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        shop.prometheus.as_ref().unwrap().host_label,
        PULL_HOST_LABEL
    );
    assert_eq!(
        stored_app_config(store.as_ref(), "shop").unwrap(),
        Some(shop.clone())
    );

    let old = stored_settings(store.as_ref(), "old").unwrap().unwrap();
    let unreadable = old.expect_err("an unknown field does not read");
    assert_eq!(unreadable.app, "old");
    assert!(
        unreadable
            .to_string()
            .starts_with("stored settings of app old are not valid: unknown field `retired_field`"),
        "{unreadable}"
    );
    assert_eq!(stored_app_config(store.as_ref(), "old").unwrap(), None);
    assert!(stored_settings(store.as_ref(), "none").unwrap().is_none());

    let all = all_stored_settings(store.as_ref()).unwrap();
    let by_app: Vec<(&str, bool)> = all
        .iter()
        .map(|(app, settings)| (app.as_str(), settings.is_ok()))
        .collect();
    assert_eq!(by_app, vec![("old", false), ("shop", true)]);
    let listed_shop = all
        .into_iter()
        .find(|(app, _)| app == "shop")
        .unwrap()
        .1
        .unwrap();
    assert_eq!(listed_shop, shop);
}
