//! `crmsync feed create|rotate|revoke|list` and `crmsync export ics` through the binary:
//! exit codes, the secret shown once and never again, rotation and revocation seen by the
//! feed service at once, and the exported file equal to the served body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use chrono::Utc;
use cli_support::Env;
use crmsync::config::Config;
use crmsync::ics::serve::{system_clock, FeedAnswer};
use crmsync::ics::{feed_now, FeedSecret, FeedService};
use crmsync::store::StateDb;
use std::process::Output;

const CONFIG: &str = r#"
[scope.org]
event = "all_visible"

[ics]
public_base_url = "https://feeds.example.com/crm/"
calendar_name = "CRM (Acme)"
"#;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn service(env: &Env) -> FeedService {
    let config = Config::load(&env.config()).unwrap();
    let state = StateDb::create(&config.state.path).unwrap();
    FeedService::start(state, config, system_clock()).unwrap()
}

async fn served(service: &FeedService, secret: &str) -> Option<String> {
    let secret = FeedSecret::parse(secret).expect("a well-formed secret");
    match service.lookup(&secret).await.unwrap() {
        FeedAnswer::Feed(f) => Some(f.body.to_string()),
        FeedAnswer::NotFound => None,
    }
}

#[tokio::test]
async fn feeds_are_created_rotated_and_revoked_and_the_secret_is_shown_once() {
    let env = Env::new(CONFIG);
    let feeds = service(&env);

    let created = env.json(&["--json", "feed", "create", "erin"]);
    let first = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        created["url"],
        format!("https://feeds.example.com/crm/ics/{first}.ics")
    );
    assert!(served(&feeds, &first).await.is_some());

    let human = env.run(&["feed", "create", "frank"]);
    assert!(human.status.success(), "{}", text(&human));
    let frank_line = String::from_utf8_lossy(&human.stdout);
    assert!(
        frank_line.contains("https://feeds.example.com/crm/ics/"),
        "{frank_line}"
    );

    // Everything printed after the secret was shown must not show it again.
    let mut later = Vec::new();
    let again = env.run(&["feed", "create", "erin"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("already has a feed"),
        "{}",
        text(&again)
    );
    later.push(text(&again));

    for args in [&["feed", "list"][..], &["--json", "feed", "list"][..]] {
        let out = env.run(args);
        assert!(out.status.success(), "{}", text(&out));
        let shown = text(&out);
        assert!(shown.contains("erin") && shown.contains("frank"), "{shown}");
        later.push(shown);
    }
    let listed = env.json(&["--json", "feed", "list"]);
    assert!(listed[0]["created_at"].is_string());
    assert!(listed[0].get("secret").is_none() && listed[0].get("secret_hash").is_none());

    let rotated = env.json(&["--json", "feed", "rotate", "erin"]);
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    later.push(rotated.to_string());
    assert_eq!(
        served(&feeds, &first).await,
        None,
        "the old URL 404s at once"
    );
    assert!(served(&feeds, &second).await.is_some());
    let listed = env.json(&["--json", "feed", "list"]);
    assert!(listed[0]["rotated_at"].is_string(), "{listed}");
    later.push(listed.to_string());

    let revoked = env.json(&["--json", "feed", "revoke", "erin"]);
    assert_eq!(revoked["revoked"], true);
    assert_eq!(served(&feeds, &second).await, None);
    let twice = env.json(&["--json", "feed", "revoke", "erin"]);
    assert_eq!(twice["revoked"], false, "revoking is idempotent");
    later.push(revoked.to_string());

    // Unknown users, inactive users, rotating without a feed: usage errors.
    for args in [
        &["feed", "create", "nobody"][..],
        &["feed", "rotate", "nobody"][..],
        &["feed", "revoke", "nobody"][..],
        &["feed", "create", "leo"][..],
        &["feed", "rotate", "dana"][..],
    ] {
        later.push(env.fails(args));
    }
    assert!(later.iter().any(|t| t.contains("inactive")), "{later:?}");
    for shown in &later {
        assert!(
            !shown.contains(&first),
            "the first secret shown again: {shown}"
        );
    }
    assert_eq!(
        env.json(&["--json", "feed", "list"])
            .as_array()
            .unwrap()
            .len(),
        1,
        "only frank's feed is left"
    );
}

#[tokio::test]
async fn the_exported_file_equals_the_served_body() {
    let env = Env::new(CONFIG);
    let feeds = service(&env);
    let created = env.json(&["--json", "feed", "create", "erin"]);
    let secret = created["secret"].as_str().unwrap().to_owned();
    let file = env.dir.path().join("erin.ics");

    // Both sides render for the current hour: if the hour turns in between, go again.
    let mut attempts = 0;
    let (exported, stdout, body) = loop {
        attempts += 1;
        let hour = feed_now(Utc::now());
        let out = env.json(&[
            "--json",
            "export",
            "ics",
            "--user",
            "erin",
            file.to_str().unwrap(),
        ]);
        assert!(out["events"].as_u64().unwrap() > 0, "{out}");
        let exported = std::fs::read_to_string(&file).unwrap();
        let stdout = env.run(&["export", "ics", "--user", "erin", "-"]);
        assert!(stdout.status.success(), "{}", text(&stdout));
        let body = served(&feeds, &secret).await.unwrap();
        if feed_now(Utc::now()) == hour || attempts == 2 {
            break (exported, String::from_utf8(stdout.stdout).unwrap(), body);
        }
    };
    assert_eq!(exported, body);
    assert_eq!(stdout, body);
    let calendar = ical::IcalParser::new(body.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    assert!(!calendar.events.is_empty());
    assert!(body.contains("X-WR-CALNAME:CRM (Acme)\r\n"), "{body}");

    // A user who may read no event (profile without event rights) gets a valid, empty
    // calendar.
    let carl = env.run(&["export", "ics", "--user", "carl", "-"]);
    assert!(carl.status.success(), "{}", text(&carl));
    let calendar = ical::IcalParser::new(&carl.stdout[..])
        .next()
        .unwrap()
        .unwrap();
    assert!(calendar.events.is_empty());

    env.fails(&["export", "ics", "--user", "nobody", "-"]);
    env.fails(&["export", "ics", "--user", "leo", "-"]);
    let unwritable = env.run(&[
        "export",
        "ics",
        "--user",
        "erin",
        "/nonexistent-dir/erin.ics",
    ]);
    assert_eq!(unwritable.status.code(), Some(1), "{}", text(&unwritable));
    assert!(text(&unwritable).contains("cannot write"));
}

#[test]
fn a_bad_ics_config_is_refused_naming_the_key() {
    let env = Env::new("");
    std::fs::write(
        env.config(),
        "[state]\npath = \"state.db\"\n[crm]\npath = \"crm.db\"\n[ics]\npublic_base_url = \"feeds.example.com\"\n",
    )
    .unwrap();
    let err = env.fails(&["feed", "list"]);
    assert!(err.contains("ics.public_base_url"), "{err}");
}
