//! `vigil logs` on a file holding Java and Python stack traces, as the built binary runs: each
//! trace is one event, counted once under one template that names its exception, at error
//! level; `--ids` gives every line of a trace its event's template id.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use support::{vigil, Dir};

/// Two requests failing with the same Java exception at different order numbers, one with a
/// cause; a Python traceback chained twice; plain lines around them.
const LOG: &str = "\
2024-05-01 10:00:00,001 INFO [main] com.shop.Server: started on port 8080
2024-05-01 10:00:01,002 ERROR [http-7] com.shop.OrderService: order 42 failed
java.lang.IllegalStateException: payment refused for order 42
\tat com.shop.Payments.charge(Payments.java:88)
\tat com.shop.OrderService.place(OrderService.java:42)
\tat java.base/java.lang.Thread.run(Thread.java:829)
Caused by: java.net.SocketTimeoutException: read timed out
\tat java.base/java.net.SocketInputStream.read(SocketInputStream.java:168)
\t... 3 more
2024-05-01 10:00:02,003 INFO [main] com.shop.Server: order 43 placed
2024-05-01 10:00:03,004 ERROR [http-9] com.shop.OrderService: order 44 failed
java.lang.IllegalStateException: payment refused for order 44
\tat com.shop.Payments.charge(Payments.java:91)
\tat com.shop.OrderService.place(OrderService.java:42)
2024-05-01 10:00:04,005 ERROR [http-3] com.shop.OrderService: order 45 failed
java.lang.NullPointerException: null
\tat com.shop.Cart.total(Cart.java:17)
2024-05-01 10:00:05,006 INFO [main] com.shop.Server: order 46 placed
2024-05-01 10:00:06,007 ERROR app.views: request 7 failed
Traceback (most recent call last):
  File \"/srv/app/views.py\", line 12, in handler
    count = int(value)
ValueError: invalid literal for int() with base 10: 'abc'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"/srv/app/views.py\", line 15, in handler
    raise BadRequest(value)
web.errors.BadRequest: abc
2024-05-01 10:00:07,008 INFO [main] com.shop.Server: order 47 placed
";

fn run_logs(args: &[&str]) -> String {
    let output = vigil().arg("logs").args(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn stack_traces_in_a_file_are_one_event_each_under_their_exception() {
    let dir = Dir::new("logs-traces");
    let path = dir.0.join("app.log");
    std::fs::write(&path, LOG).unwrap();
    let file = path.to_str().unwrap();

    let templates = run_logs(&[file]);
    let rows = templates
        .lines()
        .skip(1)
        .map(|row| row.split('\t').collect::<Vec<_>>())
        .collect::<Vec<_>>();
    assert!(rows.iter().all(|row| row.len() == 4), "{templates}");
    // started, placed (3 lines), two Java exceptions, one Python exception: no frame, cause
    // or code line is a template of its own.
    assert_eq!(rows.len(), 5, "{templates}");
    let total: u64 = rows.iter().map(|row| row[0].parse::<u64>().unwrap()).sum();
    assert_eq!(total, 8, "every event counted once: {templates}");
    let find = |needle: &str| {
        rows.iter()
            .find(|row| row[3].contains(needle))
            .unwrap_or_else(|| panic!("no template with {needle}: {templates}"))
    };
    let refused = find("java.lang.IllegalStateException");
    assert_eq!(refused[0], "2", "{templates}");
    assert_eq!(refused[2], "ERROR");
    assert_eq!(
        refused[3],
        "order <*> failed => java.lang.IllegalStateException at com.shop.Payments.charge"
    );
    let null = find("java.lang.NullPointerException");
    assert_eq!(null[0], "1");
    assert_eq!(
        null[3],
        "order <*> failed => java.lang.NullPointerException at com.shop.Cart.total"
    );
    let python = find("web.errors.BadRequest");
    assert_eq!(python[0], "1");
    assert_eq!(python[2], "ERROR");
    assert_eq!(
        python[3],
        "request <*> failed => web.errors.BadRequest at views.py:handler"
    );
    assert_eq!(find("placed")[0], "3");
    assert!(
        !templates.contains("\tat ") && !templates.contains("Caused by"),
        "{templates}"
    );

    let ids = run_logs(&["--ids", file]);
    let ids = ids.lines().collect::<Vec<_>>();
    let lines = LOG.lines().collect::<Vec<_>>();
    assert_eq!(ids.len(), lines.len());
    // The first trace: its header line and its seven continuation lines share one id, the
    // one of the second failure with the same exception; the third failure has its own.
    assert!(ids[1..9].iter().all(|id| *id == ids[1]), "{ids:?}");
    assert_ne!(ids[9], ids[1]);
    assert!(ids[10..14].iter().all(|id| *id == ids[1]), "{ids:?}");
    assert!(ids[14..17].iter().all(|id| *id == ids[14]), "{ids:?}");
    assert_ne!(ids[14], ids[1]);
    assert_eq!(ids[17], ids[9]);
    let python_start = lines
        .iter()
        .position(|line| line.contains("request 7 failed"))
        .unwrap();
    let python_end = lines
        .iter()
        .position(|line| line.starts_with("web.errors.BadRequest"))
        .unwrap();
    assert!(
        ids[python_start..=python_end]
            .iter()
            .all(|id| *id == ids[python_start]),
        "{ids:?}"
    );
    assert_ne!(ids[python_start], ids[1]);
    assert_eq!(ids[python_end + 1], ids[9]);
}
